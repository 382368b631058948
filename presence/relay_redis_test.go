package presence

import (
	"bufio"
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRedisRelayResubscribe: when Redis drops the subscriber (as it does to a slow
// one) the relay subscribes again and says so, so the caller can repair from history,
// and messages flow again.
func TestRedisRelayResubscribe(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	// The receiver's own client, named so this test can find and kill its connection
	// without touching anyone else's.
	name := strings.NewReplacer(":", "_").Replace(opts.Prefix) + "B"
	rcv := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, DB: rdb.Options().DB, ClientName: name})
	t.Cleanup(func() { rcv.Close() })
	oa, ob := opts, opts
	oa.Instance, ob.Instance = "A", "B"
	a, b := NewRedisRelay(rdb, oa, nil), NewRedisRelay(rcv, ob, nil)
	pb := startRelay(t, b)

	if err := a.Send(ctx, "B", &Message{ID: "1", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "1" {
		t.Fatalf("got %s, want 1", got.ID)
	}

	killed := killClients(t, rdb, name)
	if killed == 0 {
		t.Fatalf("found no connection named %s to kill", name)
	}
	pb.waitSubscribed(t)
	if got := b.Subscribes.Load(); got != 2 {
		t.Errorf("subscribes: got %d, want 2", got)
	}
	if err := a.Send(ctx, "B", &Message{ID: "2", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "2" {
		t.Fatalf("after resubscribing: got %s, want 2", got.ID)
	}
}

// TestRedisRelayGarbage: a payload that is not a relayed message (a person testing
// with redis-cli PUBLISH) is counted and dropped; the relay goes on.
func TestRedisRelayGarbage(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.Instance = "B"
	b := NewRedisRelay(rdb, opts, nil)
	pb := startRelay(t, b)
	keys := redisKeys(opts.Prefix)
	for _, junk := range []string{"hello", "", "\x01\xff"} {
		if err := rdb.Publish(ctx, keys.relayInstance("B"), junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewRedisRelay(rdb, RedisOptions{Prefix: opts.Prefix, Instance: "A"}, nil).Send(ctx, "B", &Message{ID: "9"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "9" {
		t.Fatalf("got %s, want 9", got.ID)
	}
	if got := b.Undecodable.Load(); got != 3 {
		t.Errorf("undecodable: got %d, want 3", got)
	}
}

// killClients closes the server side of every connection named name.
func killClients(t *testing.T, rdb *redis.Client, name string) int {
	t.Helper()
	ctx := context.Background()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		var id string
		var match bool
		for _, f := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				match = true
			}
		}
		if match && id != "" {
			if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatalf("client kill %s: %v", id, err)
			}
			n++
		}
	}
	return n
}
