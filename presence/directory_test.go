package presence

import (
	"context"
	"maps"
	"testing"
	"time"
)

// directoryImpls build, for each implementation, the directories of two live
// instances "A" and "B" that share one backend, and what their heartbeats do (the
// Redis registry reports users as of each instance's last beat).
var directoryImpls = map[string]func(t *testing.T) (a, b Directory, beat func()){
	"memory": func(*testing.T) (Directory, Directory, func()) {
		d := NewMemoryDirectory()
		return d, d, func() {}
	},
	"redis": func(t *testing.T) (Directory, Directory, func()) {
		rdb, opts := newTestRedis(t)
		reg := NewRedisInstances(rdb, opts)
		oa, ob := opts, opts
		oa.Instance, ob.Instance = "A", "B"
		a, b := NewRedisDirectory(rdb, oa), NewRedisDirectory(rdb, ob)
		beat := func() {
			for id, d := range map[string]*RedisDirectory{"A": a, "B": b} {
				if _, err := reg.Beat(context.Background(), Instance{ID: id, Started: time.Now(), Users: d.LocalUsers()}); err != nil {
					t.Fatal(err)
				}
			}
		}
		beat()
		return a, b, beat
	},
}

func TestDirectoryContract(t *testing.T) {
	for name, mk := range directoryImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b, beat := mk(t)
			t0 := time.Now()
			u1a := Entry{User: "u1", Instance: "A", Transport: "ws", Since: t0}
			u1a2 := Entry{User: "u1", Instance: "A", Transport: "sse", Since: t0.Add(time.Second)}
			u1b := Entry{User: "u1", Instance: "B", Transport: "poll", Since: t0.Add(-time.Second)}
			u2a := Entry{User: "u2 with spaces:and:colons", Instance: "A", Transport: "ws", Since: t0}
			for _, add := range []struct {
				d Directory
				e Entry
			}{{a, u1a2}, {b, u1b}, {a, u1a}, {a, u2a}} {
				if err := add.d.Add(ctx, add.e); err != nil {
					t.Fatalf("add %+v: %v", add.e, err)
				}
			}
			wantLookup(t, a, "u1", u1a, u1a2, u1b)
			wantLookup(t, b, "u1", u1a, u1a2, u1b)
			wantLookup(t, b, u2a.User, u2a)
			wantLookup(t, a, "nobody")
			beat()
			wantUsers(t, b, map[string]int{"A": 2, "B": 1})

			if err := a.Remove(ctx, u1a); err != nil {
				t.Fatal(err)
			}
			wantLookup(t, b, "u1", u1a2, u1b)
			if err := a.Remove(ctx, u1a); err != nil {
				t.Errorf("removing a connection twice: %v", err)
			}
			for _, rm := range []struct {
				d Directory
				e Entry
			}{{a, u1a2}, {b, u1b}} {
				if err := rm.d.Remove(ctx, rm.e); err != nil {
					t.Fatal(err)
				}
			}
			wantLookup(t, a, "u1")
			beat()
			wantUsers(t, a, map[string]int{"A": 1})
		})
	}
}

func wantLookup(t *testing.T, d Directory, user string, want ...Entry) {
	t.Helper()
	got, err := d.Lookup(context.Background(), user)
	if err != nil {
		t.Fatalf("lookup %s: %v", user, err)
	}
	if len(got) != len(want) {
		t.Fatalf("lookup %s: got %v, want %v", user, got, want)
	}
	for i := range got {
		if !got[i].same(want[i]) {
			t.Errorf("lookup %s [%d]: got %+v, want %+v", user, i, got[i], want[i])
		}
	}
}

func wantUsers(t *testing.T, d Directory, want map[string]int) {
	t.Helper()
	got, err := d.Users(context.Background())
	if err != nil {
		t.Fatalf("users: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("users: got %v, want %v", got, want)
	}
}
