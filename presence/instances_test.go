package presence

import (
	"context"
	"testing"
	"time"
)

// instanceImpls builds each Instances implementation with the given TTL.
var instanceImpls = map[string]func(t *testing.T, ttl time.Duration) Instances{
	"memory": func(_ *testing.T, ttl time.Duration) Instances { return NewMemoryInstances(ttl) },
	"redis": func(t *testing.T, ttl time.Duration) Instances {
		rdb, opts := newTestRedis(t)
		opts.PresenceTTL = ttl
		return NewRedisInstances(rdb, opts)
	},
}

func TestInstancesContract(t *testing.T) {
	for name, mk := range instanceImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			reg := mk(t, time.Minute)
			start := time.Now().Add(-time.Hour).Round(time.Millisecond)
			a := Instance{ID: "a", Started: start, Conns: 3}
			b := Instance{ID: "b", Started: start.Add(time.Second), Conns: 0}
			for _, inst := range []Instance{b, a} {
				if lapsed, err := reg.Beat(ctx, inst); err != nil || !lapsed {
					t.Fatalf("first beat of %s: lapsed %v, %v; want a lapse (it was not registered)", inst.ID, lapsed, err)
				}
			}
			wantInstances(t, reg, a, b)

			a.Conns, a.Users = 7, 5
			if lapsed, err := reg.Beat(ctx, a); err != nil || lapsed {
				t.Fatalf("beat within the lease: lapsed %v, %v", lapsed, err)
			}
			wantInstances(t, reg, a, b)

			if err := reg.Leave(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			wantInstances(t, reg, b)
			if err := reg.Leave(ctx, "never-there"); err != nil {
				t.Errorf("leave of an unknown instance: %v", err)
			}
		})
	}
}

// TestInstancesExpire: an instance that stops beating (a crash: nobody calls Leave)
// leaves the list within the TTL, while one that keeps beating stays.
func TestInstancesExpire(t *testing.T) {
	const ttl = time.Second
	for name, mk := range instanceImpls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			reg := mk(t, ttl)
			live := Instance{ID: "live", Started: time.Now()}
			crashed := Instance{ID: "crashed", Started: time.Now()}
			for _, inst := range []Instance{live, crashed} {
				if _, err := reg.Beat(ctx, inst); err != nil {
					t.Fatal(err)
				}
			}
			lastBeat := time.Now()
			hbCtx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				Heartbeat(hbCtx, ttl, func(ctx context.Context) error { _, err := reg.Beat(ctx, live); return err },
					func(err error) { t.Errorf("heartbeat: %v", err) })
			}()
			t.Cleanup(func() { stop(); <-done })

			// Until the crashed one is gone, the live one must stay: its heartbeat keeps it.
			eventually(t, ttl+leaseGrace(ttl)+time.Second, "the crashed instance to leave the list", func() bool {
				l, err := reg.List(ctx)
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				ids := make(map[string]bool)
				for _, x := range l {
					ids[x.ID] = true
				}
				if !ids["live"] {
					t.Fatalf("the instance that beats left the list: %v", l)
				}
				return !ids["crashed"]
			})
			if gone := time.Since(lastBeat); gone < ttl/2 {
				t.Errorf("the crashed instance left %s after its last beat, well before the TTL of %s", gone, ttl)
			}
			stop()
			<-done
		})
	}
}

func wantInstances(t *testing.T, reg Instances, want ...Instance) {
	t.Helper()
	got, err := reg.List(context.Background())
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("list: got %v, want %v", got, want)
	}
	for i := range got {
		if got[i].ID != want[i].ID || !got[i].Started.Equal(want[i].Started) || got[i].Conns != want[i].Conns || got[i].Users != want[i].Users {
			t.Errorf("list[%d]: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
