package presence

import (
	"context"
	"testing"
	"time"
)

// redisPair is two instances on one Redis, each with its registry heartbeat and
// directory, as app wires them.
type redisPair struct {
	reg  *RedisInstances
	dirs map[string]*RedisDirectory
	stop map[string]func() // stops an instance's heartbeat, as a crash would
}

func newRedisPair(t *testing.T, ttl time.Duration) *redisPair {
	t.Helper()
	rdb, opts := newTestRedis(t)
	opts.PresenceTTL = ttl
	p := &redisPair{reg: NewRedisInstances(rdb, opts), dirs: map[string]*RedisDirectory{}, stop: map[string]func(){}}
	for _, id := range []string{"A", "B"} {
		o := opts
		o.Instance = id
		d := NewRedisDirectory(rdb, o)
		p.dirs[id] = d
		inst := Instance{ID: id, Started: time.Now()}
		beat := func(ctx context.Context) error {
			if err := p.reg.Beat(ctx, inst); err != nil {
				return err
			}
			_, err := d.RefreshLapsed(ctx)
			return err
		}
		if err := beat(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Heartbeat(ctx, ttl, beat, func(err error) { t.Errorf("heartbeat %s: %v", id, err) })
		}()
		p.stop[id] = func() { cancel(); <-done }
		t.Cleanup(p.stop[id])
	}
	return p
}

// TestRedisDirectoryCrash: the connections of an instance that stops beating without
// cleaning up vanish from every user's presence within the TTL, with nobody acting.
func TestRedisDirectoryCrash(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	ctx := testCtx(t)
	p := newRedisPair(t, ttl)
	for _, e := range []Entry{
		{User: "u1", Instance: "A", Transport: "ws", Since: time.Now()},
		{User: "u2", Instance: "A", Transport: "sse", Since: time.Now()},
		{User: "u1", Instance: "B", Transport: "ws", Since: time.Now()},
	} {
		if err := p.dirs[e.Instance].Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	wantUsers(t, p.dirs["B"], map[string]int{"A": 2, "B": 1})

	p.stop["A"]()
	crashed := time.Now()
	eventually(t, ttl+time.Second, "A's connections to vanish", func() bool {
		u1, err := p.dirs["B"].Lookup(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		u2, err := p.dirs["B"].Lookup(ctx, "u2")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range u1 {
			if e.Instance == "A" {
				return false
			}
		}
		if len(u1) != 1 {
			t.Fatalf("B's connection of u1 vanished too: %v", u1)
		}
		return len(u2) == 0
	})
	if gone := time.Since(crashed); gone < ttl/2 {
		t.Errorf("A vanished %s after its last beat, well before the TTL of %s", gone, ttl)
	}
	wantUsers(t, p.dirs["B"], map[string]int{"B": 1})
	if l, err := p.reg.List(ctx); err != nil || len(l) != 1 || l[0].ID != "B" {
		t.Errorf("live instances: got %v, %v; want only B", l, err)
	}
}

// TestRedisDirectoryLeave: a clean stop removes the instance's connections at once.
func TestRedisDirectoryLeave(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newRedisPair(t, time.Minute)
	a := Entry{User: "u1", Instance: "A", Transport: "ws", Since: time.Now()}
	b := Entry{User: "u1", Instance: "B", Transport: "ws", Since: time.Now()}
	if err := p.dirs["A"].Add(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := p.dirs["B"].Add(ctx, b); err != nil {
		t.Fatal(err)
	}
	p.stop["A"]()
	if err := p.reg.Leave(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, p.dirs["B"], "u1", b)
}

// TestRedisDirectoryRewrite: connections Redis lost (a restart) or never got (a
// failed write) are written again by Refresh, from what the instance holds.
func TestRedisDirectoryRewrite(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newRedisPair(t, time.Minute)
	d := p.dirs["A"]
	e1 := Entry{User: "u1", Instance: "A", Transport: "ws", Since: time.Now()}
	if err := d.Add(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.Del(ctx, d.keys.conns("A")).Err(); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, d, "u1")

	e2 := Entry{User: "u2", Instance: "A", Transport: "sse", Since: time.Now()}
	failed, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Add(failed, e2); err == nil {
		t.Fatal("add with a dead context: got no error")
	}
	wantLookup(t, d, "u2")

	if _, err := d.RefreshLapsed(ctx); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, d, "u1", e1)
	wantLookup(t, d, "u2", e2)
	if ttl, err := d.rdb.PTTL(ctx, d.keys.conns("A")).Result(); err != nil || ttl <= 0 {
		t.Errorf("conns key TTL after rewrite: got %v, %v; want > 0", ttl, err)
	}

	if err := d.Add(ctx, Entry{User: "u3", Instance: "B", Transport: "ws", Since: time.Now()}); err == nil {
		t.Error("A's directory accepted a connection of B")
	}
}
