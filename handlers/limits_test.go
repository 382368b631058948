package handlers

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

func wantStatus(t *testing.T, err error, status int) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != status {
		t.Fatalf("got %v, want an error with status %d", err, status)
	}
	return e
}

// TestConnSlotsConcurrent: concurrent acquisitions never overshoot the limits, and
// every slot comes back on release (twice releasing is harmless).
func TestConnSlotsConcurrent(t *testing.T) {
	s := newConnSlots(50, 10)
	var (
		mu       sync.Mutex
		releases []func()
		wg       sync.WaitGroup
	)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := s.acquire("u" + strconv.Itoa(i%8))
			if err != nil {
				if e := (*Error)(nil); !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
					t.Errorf("got %v, want 503", err)
				}
				return
			}
			mu.Lock()
			releases = append(releases, rel)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(releases) != 50 { // 8 users x 10 would be 80: the instance limit of 50 binds
		t.Errorf("got %d connections admitted, want 50", len(releases))
	}
	for user, n := range s.users {
		if n > 10 {
			t.Errorf("user %s holds %d, over the per-user limit 10", user, n)
		}
	}
	for _, rel := range releases {
		rel()
		rel()
	}
	if s.total != 0 || len(s.users) != 0 {
		t.Errorf("after release: total %d, users %v; want nothing held", s.total, s.users)
	}
}

func TestConnSlotsPerUser(t *testing.T) {
	s := newConnSlots(0, 2)
	for i := 0; i < 2; i++ {
		if _, err := s.acquire("a"); err != nil {
			t.Fatal(err)
		}
	}
	e := wantStatus(t, func() error { _, err := s.acquire("a"); return err }(), http.StatusServiceUnavailable)
	if e.RetryAfter != "5" {
		t.Errorf("Retry-After %q, want 5", e.RetryAfter)
	}
	if _, err := s.acquire("b"); err != nil {
		t.Errorf("another user refused: %v", err)
	}
}

// TestUserRates: a user gets the burst, then 429 with a Retry-After; other users are
// not affected; idle buckets are forgotten so the map does not grow without bound.
func TestUserRates(t *testing.T) {
	u := newUserRates(Limits{MessageRate: 1, MessageBurst: 3})
	for i := 0; i < 3; i++ {
		if err := u.allow("a"); err != nil {
			t.Fatalf("message %d within the burst: %v", i, err)
		}
	}
	e := wantStatus(t, u.allow("a"), http.StatusTooManyRequests)
	if e.RetryAfter != "1" {
		t.Errorf("Retry-After %q, want 1", e.RetryAfter)
	}
	if err := u.allow("b"); err != nil {
		t.Errorf("user b limited by user a's messages: %v", err)
	}

	// Age every bucket past its refill time, then add enough users to trigger a sweep.
	u.mu.Lock()
	for _, b := range u.buckets {
		b.seen = b.seen.Add(-time.Hour)
	}
	u.mu.Unlock()
	for i := 0; i < 2*minSweep; i++ {
		if err := u.allow("user" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	u.mu.Lock()
	_, aKept := u.buckets["a"]
	n := len(u.buckets)
	u.mu.Unlock()
	if aKept || n > 2*minSweep {
		t.Errorf("after a sweep: %d buckets, idle bucket of a kept=%v; want idle buckets gone", n, aKept)
	}
}

func TestUnlimitedRates(t *testing.T) {
	u := newUserRates(Limits{})
	for i := 0; i < 1000; i++ {
		if err := u.allow("a"); err != nil {
			t.Fatalf("message %d with no rate configured: %v", i, err)
		}
	}
}
