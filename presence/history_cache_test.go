package presence

import (
	"context"
	"testing"
	"time"
)

// TestEntryCacheRuns: the cache knows which stretch of a stream it holds whole, as
// entries come and go, and a read skips only what is in it.
func TestEntryCacheRuns(t *testing.T) {
	size := (&Message{Body: make([]byte, 100)}).Size()
	c := newEntryCache(4 * size)
	put := func(seq uint64) {
		c.put(entryKey{"", "e", seq}, &Message{Epoch: "e", Seq: seq, Body: make([]byte, 100)})
	}
	want := func(from Pos, lo, hi uint64) {
		t.Helper()
		got := c.held("", from)
		if want := (run{"e", lo, hi}); (lo > hi && got != run{}) || (lo <= hi && got != want) {
			t.Errorf("held after %v: got %+v, want %d..%d", from, got, lo, hi)
		}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		put(seq)
	}
	want(Pos{}, 1, 3)
	want(Pos{Epoch: "e", Seq: 1}, 2, 3)
	want(Pos{Epoch: "other", Seq: 1}, 1, 0)
	want(Pos{Epoch: "e", Seq: 3}, 1, 0)
	put(4)
	put(5) // over 4 entries: 1 goes
	want(Pos{}, 2, 5)
	put(9) // not next to the run: a new one
	want(Pos{}, 9, 9)
}

// TestRedisHistoryReadsAgainWhatTheCacheLost: a read that left out entries the cache
// no longer holds is read again, whole.
func TestRedisHistoryReadsAgainWhatTheCacheLost(t *testing.T) {
	rdb, opts := newTestRedis(t)
	opts.HistorySize, opts.HistoryTTL = 100, time.Hour
	h := NewRedisHistory(rdb, opts)
	var ms []*Message
	for i := range 5 {
		m := &Message{RoutingKey: "k", Body: []byte{'a' + byte(i)}}
		appendAll(t, h, m)
		ms = append(ms, m)
	}
	// The cache claims 1..3, holding none of them.
	h.cache.runs[""] = run{epoch: ms[0].Epoch, lo: 1, hi: 3}
	w, err := h.Read(context.Background(), "", Pos{}, 10, 0)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(w.Msgs) != 5 {
		t.Fatalf("got %d messages, want 5", len(w.Msgs))
	}
	for i, m := range w.Msgs {
		if m.Seq != ms[i].Seq || string(m.Body) != string(ms[i].Body) {
			t.Errorf("message %d: got %d %q, want %d %q", i, m.Seq, m.Body, ms[i].Seq, ms[i].Body)
		}
	}
}
