package presence

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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
		{"DispatchSplitsBigBatches", TestRedisDispatchSplitsBigBatches},
		{"RelayIsSharded", testRelayIsSharded},
		{"Transitions", TestRedisTransitions},
		{"TransitionsCrashedInstance", TestRedisTransitionsCrashedInstance},
		{"DispatchNotResentAfterATimeout", func(t *testing.T) { testDispatchNotResent(t, c) }},
		{"RunIDAdoptsAnOlderMeta", TestRunIDAdoptsAnOlderMeta},
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

// testDispatchNotResent: a dispatch whose master is paused (SIGSTOP) past the read
// timeout fails, and go-redis does not send it again by itself (a cluster client
// resends timed-out commands unless told not to): once the master continues it runs
// the call it had received, once — one entry, not one per resend, even in dedupe mode
// record, which cannot tell a resend from a new message.
func testDispatchNotResent(t *testing.T, c *redistest.RedisCluster) {
	rdb, opts := newTestRedis(t)
	d := NewRedisDispatcher(rdb, opts)
	ctx := testCtx(t)
	if _, err := d.Dispatch(ctx, &Message{UserID: "p", Body: []byte("warm")}, ""); err != nil {
		t.Fatal(err)
	}
	node := c.NodeOf(t, d.keys.stream("p"))
	c.Pause(t, node)
	paused := true
	defer func() {
		if paused {
			c.Resume(t, node)
		}
	}()
	b := []Dispatch{{M: &Message{UserID: "p", Body: []byte("during the pause")}, Key: "k", RecordOnly: true}}
	d.DispatchBatch(ctx, b)
	if b[0].Err == nil {
		t.Fatal("a dispatch to a paused master succeeded")
	}
	// DispatchBatch returns after go-redis's own resends, if any: all were received
	// by the paused master before it continues.
	c.Resume(t, node)
	paused = false
	var n int64
	eventually(t, 10*time.Second, "the paused call run", func() bool {
		var err error
		n, err = rdb.XLen(context.Background(), d.keys.stream("p")).Result()
		return err == nil && n >= 2
	})
	// Any resend would have been received before the master continued.
	if n != 2 {
		t.Fatalf("the stream holds %d entries after one dispatch during a pause (and one before), want 2: the call was sent again", n)
	}
}
