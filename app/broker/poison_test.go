package broker

import (
	"fmt"
	"testing"
	"time"
)

func TestFailuresCountByIDElseBody(t *testing.T) {
	f := newFailures()
	byID := f.key("q", "m1", []byte("a"))
	if n := f.fail(byID); n != 1 {
		t.Fatalf("first failure: %d, want 1", n)
	}
	// The id names the message whatever its body; without one the body does.
	if n := f.fail(f.key("q", "m1", []byte("b"))); n != 2 {
		t.Errorf("same id, another body: %d, want 2", n)
	}
	if n := f.fail(f.key("q", "", []byte("a"))); n != 1 {
		t.Errorf("no id, body a: %d, want 1 (not the count of id m1)", n)
	}
	if n := f.fail(f.key("q", "", []byte("a"))); n != 2 {
		t.Errorf("no id, body a again: %d, want 2", n)
	}
	if n := f.fail(f.key("other", "m1", nil)); n != 1 {
		t.Errorf("same id on another queue: %d, want 1", n)
	}
	f.forget(byID)
	if n := f.fail(byID); n != 1 {
		t.Errorf("after forget: %d, want 1", n)
	}
}

func TestFailuresAreBounded(t *testing.T) {
	f := newFailures()
	first := f.key("q", "id-0", nil)
	f.fail(first)
	f.fail(first)
	for i := 1; i <= maxTracked; i++ {
		f.fail(f.key("q", fmt.Sprint("id-", i), nil))
		if i%7 == 0 { // forgotten out of order: stale entries must not grow the order list
			f.forget(f.key("q", fmt.Sprint("id-", i), nil))
		}
	}
	if len(f.count) > maxTracked {
		t.Fatalf("%d counts, want at most %d", len(f.count), maxTracked)
	}
	if len(f.order) > 2*len(f.count)+64+maxTracked/7 {
		t.Errorf("order holds %d entries for %d counts", len(f.order), len(f.count))
	}
	for range 2 * maxTracked { // keep adding: the bound holds and the oldest goes first
		f.fail(f.key("q", fmt.Sprint("more-", len(f.order), "-", f.seq), nil))
	}
	if len(f.count) > maxTracked || len(f.order) > 2*maxTracked+64 {
		t.Fatalf("%d counts, %d entries, want at most %d counts", len(f.count), len(f.order), maxTracked)
	}
	if n := f.fail(first); n != 1 {
		t.Errorf("the oldest count survived the bound: %d, want 1", n)
	}
}

func TestFailuresExpire(t *testing.T) {
	f := newFailures()
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	k := f.key("q", "m", nil)
	f.fail(k)
	now = now.Add(trackedTTL - time.Second)
	if n := f.fail(k); n != 2 {
		t.Fatalf("within the TTL: %d, want 2", n)
	}
	now = now.Add(trackedTTL + time.Second)
	f.fail(f.key("q", "other", nil)) // any failure expires the idle ones
	if n := f.fail(k); n != 1 {
		t.Errorf("after the TTL: %d, want 1", n)
	}
}

func TestDeliveryCount(t *testing.T) {
	for _, tc := range []struct {
		h    map[string]any
		want int64
	}{
		{nil, 0}, {map[string]any{"x-delivery-count": int64(3)}, 3}, {map[string]any{"x-delivery-count": int32(2)}, 2},
		{map[string]any{"x-delivery-count": "7"}, 0},
	} {
		if got := deliveryCount(tc.h); got != tc.want {
			t.Errorf("deliveryCount(%v) = %d, want %d", tc.h, got, tc.want)
		}
	}
}
