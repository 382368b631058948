package presence

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence/redistest"
)

// TestContractsOnRedisCluster runs the Redis side of every contract test, and the
// dispatcher's tests of refused and failed calls, against a private Redis Cluster of
// three masters (redis+cluster://, go-redis ClusterClient, sharded pub/sub): one
// message's keys share a slot, a batch spans masters, and the relay's two channels
// are on shards of their own.
func TestContractsOnRedisCluster(t *testing.T) {
	c := redistest.NewRedisCluster(t)
	onCluster = c.URL
	defer func() { onCluster = "" }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"Instances", TestInstancesContract},
		{"Directory", TestDirectoryContract},
		{"History", TestHistoryContract},
		{"HistoryKeysShareASlot", TestRedisHistoryKeysShareASlot},
		{"Relay", TestRelayContract},
		{"Dispatcher", TestDispatcherContract},
		{"DispatchBatch", TestDispatchBatchContract},
		{"DispatchFailsOnlyTheBrokenCall", TestRedisDispatchBatchFailsOnlyTheBrokenCall},
		{"DispatchRefusesAStreamOfAnotherType", TestRedisDispatchRefusesAStreamOfAnotherType},
		{"RelayIsSharded", testRelayIsSharded},
		{"Transitions", TestRedisTransitions},
		{"TransitionsCrashedInstance", TestRedisTransitionsCrashedInstance},
	} {
		t.Run(tc.name, tc.test)
	}
}

// testRelayIsSharded: on a cluster a subscribed relay's two channels are sharded
// channels (SSUBSCRIBE), each on the master of its slot, and none is a classic one,
// which every node would have to carry.
func testRelayIsSharded(t *testing.T) {
	rdb, opts := newTestRedis(t)
	opts.Instance = "A"
	r := NewRedisRelay(rdb, opts, nil)
	startRelay(t, r)
	cc := rdb.(*redis.ClusterClient)
	ctx := testCtx(t)
	var mu sync.Mutex // ForEachMaster calls in parallel
	var sharded, classic []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		s, err := m.PubSubShardChannels(ctx, r.ns+"*").Result()
		if err != nil {
			return err
		}
		c, err := m.PubSubChannels(ctx, r.ns+"*").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		sharded, classic = append(sharded, s...), append(classic, c...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(sharded)
	want := []string{relayInstance(r.ns, "A"), relayBroadcast(r.ns)}
	slices.Sort(want)
	if !slices.Equal(sharded, want) || len(classic) > 0 {
		t.Fatalf("sharded channels %q and classic ones %q, want sharded %q only", sharded, classic, want)
	}
}
