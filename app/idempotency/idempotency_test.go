package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/idempotency"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// stores runs a test against the in-memory store and against the real Redis.
func stores(t *testing.T, run func(t *testing.T, s idempotency.Store)) {
	t.Run("memory", func(t *testing.T) { run(t, idempotency.NewMemory(time.Minute, 1000)) })
	t.Run("redis", func(t *testing.T) {
		rds := apptest.NewRedis(t)
		run(t, idempotency.NewRedis(rds.Client, rds.Prefix, time.Minute))
	})
}

func TestStoreClaimSaveRelease(t *testing.T) {
	stores(t, func(t *testing.T, s idempotency.Store) {
		ctx := context.Background()
		res, c, err := s.Claim(ctx, "k1")
		if err != nil || res != nil || c == nil {
			t.Fatalf("first claim: %v %v %v, want a claim", res, c, err)
		}
		if res, c2, err := s.Claim(ctx, "k1"); err != nil || res != nil || c2 != nil {
			t.Fatalf("claim while held: %v %v %v, want neither result nor claim", res, c2, err)
		}
		want := idempotency.Result{Status: 202, Body: []byte(`{"id":"k1"}` + "\n"), Fingerprint: "fp"}
		if err := s.Save(ctx, c, want); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, c); err != nil { // too late: a result is never released
			t.Fatal(err)
		}
		res, c3, err := s.Claim(ctx, "k1")
		if err != nil || c3 != nil || res == nil || res.Status != want.Status || string(res.Body) != string(want.Body) || res.Fingerprint != "fp" {
			t.Fatalf("claim after save: %+v %v %v, want the saved result", res, c3, err)
		}

		_, c, _ = s.Claim(ctx, "k2")
		if err := s.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, c, err := s.Claim(ctx, "k2"); err != nil || c == nil {
			t.Fatalf("claim after release: %v %v, want a new claim", c, err)
		}
	})
}

// Concurrent requests with one key publish once and all answer the same; a request
// with another body under the key is refused; a failed publish lets the key go.
func TestDoPublishesOnce(t *testing.T) {
	stores(t, func(t *testing.T, s idempotency.Store) {
		ctx := context.Background()
		var published atomic.Int32
		release := make(chan struct{})
		publish := func() (idempotency.Result, bool, error) {
			n := published.Add(1)
			<-release // every other request arrives while this one publishes
			return idempotency.Result{Status: 202, Body: fmt.Appendf(nil, "publish %d", n)}, true, nil
		}
		const n = 20
		var wg sync.WaitGroup
		results := make([]idempotency.Result, n)
		replays := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				results[i], replays[i], errs[i] = idempotency.Do(ctx, s, "same", "fp", 10*time.Second, quiet, publish)
			})
		}
		apptest.Eventually(t, 5*time.Second, "one publish under way", func() bool { return published.Load() == 1 })
		close(release)
		wg.Wait()
		if p := published.Load(); p != 1 {
			t.Fatalf("published %d times, want 1", p)
		}
		fresh := 0
		for i := range n {
			if errs[i] != nil || string(results[i].Body) != "publish 1" || results[i].Status != 202 {
				t.Errorf("request %d: %+v %v, want publish 1's answer", i, results[i], errs[i])
			}
			if !replays[i] {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d answers not replayed, want 1 (the one that published)", fresh)
		}

		if _, _, err := idempotency.Do(ctx, s, "same", "other fp", time.Second, quiet, publish); !errors.Is(err, idempotency.ErrMismatch) {
			t.Errorf("another request under the key: %v, want ErrMismatch", err)
		}

		boom := errors.New("broker down")
		if _, _, err := idempotency.Do(ctx, s, "retry", "fp", time.Second, quiet, func() (idempotency.Result, bool, error) {
			return idempotency.Result{}, false, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("failed publish: %v, want its error", err)
		}
		res, replayed, err := idempotency.Do(ctx, s, "retry", "fp", time.Second, quiet, func() (idempotency.Result, bool, error) {
			return idempotency.Result{Status: 202, Body: []byte("second try")}, true, nil
		})
		if err != nil || replayed || string(res.Body) != "second try" {
			t.Errorf("retry after a failed publish: %+v replayed=%v %v, want it published", res, replayed, err)
		}
	})
}

// A request that finds the key held past its wait answers ErrBusy rather than publish.
func TestDoBusy(t *testing.T) {
	stores(t, func(t *testing.T, s idempotency.Store) {
		if _, c, err := s.Claim(context.Background(), "held"); err != nil || c == nil {
			t.Fatalf("claim: %v %v", c, err)
		}
		_, _, err := idempotency.Do(context.Background(), s, "held", "fp", 50*time.Millisecond, quiet, func() (idempotency.Result, bool, error) {
			t.Error("published while another request held the key")
			return idempotency.Result{}, false, nil
		})
		if !errors.Is(err, idempotency.ErrBusy) {
			t.Errorf("got %v, want ErrBusy", err)
		}
	})
}

func TestMemoryIsBounded(t *testing.T) {
	m := idempotency.NewMemory(time.Minute, 3)
	ctx := context.Background()
	for i := range 10 {
		_, c, _ := m.Claim(ctx, fmt.Sprint("k", i))
		if err := m.Save(ctx, c, idempotency.Result{Status: 202}); err != nil {
			t.Fatal(err)
		}
		if n := m.Len(); n > 3 {
			t.Fatalf("%d keys held, want at most 3", n)
		}
	}
	if res, _, _ := m.Claim(ctx, "k9"); res == nil {
		t.Error("the newest result was forgotten")
	}
	if res, _, _ := m.Claim(ctx, "k0"); res != nil {
		t.Error("the oldest result survived the bound")
	}
}

func TestRedisResultExpiresWithTheWindow(t *testing.T) {
	rds := apptest.NewRedis(t)
	s := idempotency.NewRedis(rds.Client, rds.Prefix, 90*time.Second)
	ctx := context.Background()
	_, c, err := s.Claim(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if ttl := rds.Client.PTTL(ctx, rds.Prefix+"idem:k").Val(); ttl <= 0 || ttl > idempotency.ClaimTTL {
		t.Errorf("claim TTL %v, want up to %v", ttl, idempotency.ClaimTTL)
	}
	if err := s.Save(ctx, c, idempotency.Result{Status: 202}); err != nil {
		t.Fatal(err)
	}
	if ttl := rds.Client.PTTL(ctx, rds.Prefix+"idem:k").Val(); ttl <= idempotency.ClaimTTL || ttl > 90*time.Second {
		t.Errorf("result TTL %v, want the window (90s)", ttl)
	}
}
