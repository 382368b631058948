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
			inst.Users = d.LocalUsers()
			if _, err := p.reg.Beat(ctx, inst); err != nil {
				return err
			}
			_, err := d.Refresh(ctx)
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
	eventually(t, 5*time.Second, "the beats to report the users", func() bool {
		got, err := p.dirs["B"].Users(ctx)
		return err == nil && got["A"] == 2 && got["B"] == 1
	})

	p.stop["A"]()
	crashed := time.Now()
	eventually(t, ttl+leaseGrace(ttl)+time.Second, "A's connections to vanish", func() bool {
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
	// A beat stopped half-way may have renewed the lease but not the connections.
	eventually(t, ttl/3+time.Second, "A to leave the registry", func() bool {
		users, err := p.dirs["B"].Users(ctx)
		l, err2 := p.reg.List(ctx)
		return err == nil && err2 == nil && len(users) == 1 && users["B"] == 1 && len(l) == 1 && l[0].ID == "B"
	})
}

// TestRedisDirectoryLeave: a clean stop (connections drained, then Leave) removes
// the instance and its connections at once.
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
	if err := p.dirs["A"].Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := p.reg.Leave(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, p.dirs["B"], "u1", b)
	if l, err := p.reg.List(ctx); err != nil || len(l) != 1 || l[0].ID != "B" {
		t.Errorf("live instances: got %v, %v; want only B", l, err)
	}
	if n, err := p.dirs["A"].rdb.HLen(ctx, p.dirs["A"].keys.meta("u1")).Result(); err != nil || n == 0 {
		t.Errorf("u1's meta: %d fields, %v", n, err)
	}
}

// TestRedisDirectoryRewrite: a beat writes every connection of the instance back,
// whatever Redis holds — one user's presence deleted and another user attaching
// since must not leave the first out (issue 11, item 1) — and the tops it reads show
// where each connection's streams are.
func TestRedisDirectoryRewrite(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newRedisPair(t, time.Minute)
	p.stop["A"]() // this test beats A by hand
	d := p.dirs["A"]
	e1 := Entry{User: "u1", Instance: "A", Transport: "ws", Since: time.Now()}
	if err := d.Add(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.HDel(ctx, d.keys.meta("u1"), presenceField("A")).Err(); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, d, "u1")
	e2 := Entry{User: "u2", Instance: "A", Transport: "poll", Since: time.Now()}
	if err := d.Add(ctx, e2); err != nil {
		t.Fatal(err)
	}

	e3 := Entry{User: "u3", Instance: "A", Transport: "sse", Since: time.Now()}
	failed, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Add(failed, e3); err == nil {
		t.Fatal("add with a dead context: got no error")
	}
	wantLookup(t, d, "u3")
	m := &Message{UserID: "u2", Body: []byte("x")}
	if err := NewRedisHistory(d.rdb, RedisOptions{Prefix: string(d.keys)}).Append(ctx, m); err != nil {
		t.Fatal(err)
	}

	tops, err := d.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantLookup(t, d, "u1", e1)
	wantLookup(t, d, "u2", e2)
	wantLookup(t, d, "u3", e3)
	if len(tops.Users) != 3 || tops.Users["u1"] != (Pos{}) || tops.Users["u2"] != m.Pos() || tops.Bcast != (Pos{}) {
		t.Errorf("tops: got %+v, want u1 and u3 without a stream, u2 at %v", tops, m.Pos())
	}
	if ttl, err := d.rdb.PTTL(ctx, d.keys.meta("u1")).Result(); err != nil || ttl <= 0 {
		t.Errorf("u1's meta TTL after the rewrite: got %v, %v; want > 0", ttl, err)
	}

	if err := d.Add(ctx, Entry{User: "u4", Instance: "B", Transport: "ws", Since: time.Now()}); err == nil {
		t.Error("A's directory accepted a connection of B")
	}
}

// TestRedisLeaseLapse: a beat reports a lapse when the instance's lease was gone —
// deleted, or run out — and not when it was still running.
func TestRedisLeaseLapse(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.PresenceTTL = time.Minute
	reg := NewRedisInstances(rdb, opts)
	inst := Instance{ID: "A", Started: time.Now()}
	beat := func(want bool, why string) {
		t.Helper()
		lapsed, err := reg.Beat(ctx, inst)
		if err != nil || lapsed != want {
			t.Fatalf("%s: lapsed %v, %v; want %v", why, lapsed, err, want)
		}
	}
	beat(true, "first beat")
	beat(false, "beat within the lease")
	if err := rdb.Del(ctx, reg.keys.registry()).Err(); err != nil {
		t.Fatal(err)
	}
	beat(true, "beat after the registry was deleted")
	reg.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	beat(true, "beat after the lease ran out")
}
