package presence

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRedisHistoryAcrossInstances: two instances append concurrently to one Redis;
// ids are unique and ordered, and a cursor handed out by one resumes on the other
// with the same messages.
func TestRedisHistoryAcrossInstances(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	h1, h2 := NewRedisHistory(rdb, opts), NewRedisHistory(rdb, opts)

	const perInstance = 50
	sent := appendConcurrently(t, perInstance, h1, h2)
	all, complete, err := h1.After(ctx, "u", "0", 1000)
	if err != nil || !complete || len(all) != 2*perInstance {
		t.Fatalf("after 0 on h1: %d messages, complete %v, err %v; want %d, true, nil", len(all), complete, err, 2*perInstance)
	}
	seen := make(map[string]bool)
	for i, m := range all {
		if seen[m.ID] {
			t.Fatalf("id %s handed out twice", m.ID)
		}
		seen[m.ID] = true
		if i > 0 && mustCursor(t, m.ID) <= mustCursor(t, all[i-1].ID) {
			t.Fatalf("after: %s follows %s", m.ID, all[i-1].ID)
		}
	}
	for _, ms := range sent {
		for _, m := range ms {
			if !seen[m.ID] {
				t.Errorf("message %s missing from the history", m.ID)
			}
		}
	}

	// Resume at points all along h1's view, on h2: the same tail, oldest first.
	for i := 0; i < len(all); i += 7 {
		got, complete, err := h2.After(ctx, "u", all[i].ID, 1000)
		if err != nil || !complete {
			t.Fatalf("after %s on h2: complete %v, err %v", all[i].ID, complete, err)
		}
		if want := ids(all[i+1:]); !slices.Equal(ids(got), want) {
			t.Fatalf("after %s on h2: got %v, want %v", all[i].ID, ids(got), want)
		}
	}
	head1, _ := h1.Head(ctx)
	head2, _ := h2.Head(ctx)
	if head1 != head2 || head1 != all[len(all)-1].ID {
		t.Errorf("heads: %s and %s, want both %s", head1, head2, all[len(all)-1].ID)
	}
}

// TestRedisHistoryPrevChain: each message names the one before it in its stream, so
// a receiver can tell a gap from a message it already has.
func TestRedisHistoryPrevChain(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.HistoryTTL = time.Hour
	h1, h2 := NewRedisHistory(rdb, opts), NewRedisHistory(rdb, opts)
	var prevUser, prevBcast string
	for n := range 20 {
		h := []*RedisHistory{h1, h2}[n%2]
		m := &Message{UserID: "u", Body: []byte("x")}
		if n%3 == 0 {
			m.UserID = ""
		}
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		want := &prevUser
		if m.UserID == "" {
			want = &prevBcast
		}
		if m.Prev != *want {
			t.Fatalf("message %d (%s): prev %q, want %q", n, m.ID, m.Prev, *want)
		}
		*want = m.ID
	}
}

// appendConcurrently appends n messages through each history at once, a broadcast
// every fifth, and returns what each appended.
func appendConcurrently(t *testing.T, n int, hs ...*RedisHistory) [][]*Message {
	t.Helper()
	ctx := testCtx(t)
	sent := make([][]*Message, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			for k := range n {
				user := "u"
				if k%5 == 0 {
					user = ""
				}
				m := &Message{UserID: user, RoutingKey: "k", Body: []byte{byte(i), byte(k)}}
				if err := h.Append(ctx, m); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				sent[i] = append(sent[i], m)
			}
		})
	}
	wg.Wait()
	return sent
}
