package presence

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// historyImpls build each History implementation with the given bounds.
var historyImpls = map[string]func(t *testing.T, size int, ttl time.Duration) History{
	"memory": func(_ *testing.T, size int, ttl time.Duration) History { return NewMemoryHistory(size, ttl) },
	"redis": func(t *testing.T, size int, ttl time.Duration) History {
		rdb, opts := newTestRedis(t)
		opts.HistorySize, opts.HistoryTTL = size, ttl
		return NewRedisHistory(rdb, opts)
	},
}

func appendAll(t *testing.T, h History, ms ...*Message) {
	t.Helper()
	for _, m := range ms {
		if err := h.Append(context.Background(), m); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

// wantRead checks Read's messages (by position, user and content), top and reset.
func wantRead(t *testing.T, h History, user string, from Pos, limit int, reset string, want ...*Message) Window {
	t.Helper()
	w, err := h.Read(context.Background(), user, from, limit, 0)
	if err != nil {
		t.Fatalf("read(%q, %v): %v", user, from, err)
	}
	if w.Reset != reset {
		t.Errorf("read(%q, %v): reset %q, want %q", user, from, w.Reset, reset)
	}
	if len(w.Msgs) != len(want) {
		t.Fatalf("read(%q, %v): got %d messages %v, want %d", user, from, len(w.Msgs), seqs(w.Msgs), len(want))
	}
	for i := range want {
		g, x := w.Msgs[i], want[i]
		if g.Pos() != x.Pos() || g.UserID != x.UserID || g.RoutingKey != x.RoutingKey || !bytes.Equal(g.Body, x.Body) || g.Time != x.Time {
			t.Errorf("read(%q, %v)[%d]: got {%v %q %q %q %d}, want {%v %q %q %q %d}", user, from, i,
				g.Pos(), g.UserID, g.RoutingKey, g.Body, g.Time, x.Pos(), x.UserID, x.RoutingKey, x.Body, x.Time)
		}
	}
	return w
}

func seqs(ms []*Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// TestHistoryContract: each stream numbers its own messages densely in one epoch; a
// read after a position gives the rest of that stream and nothing of another.
func TestHistoryContract(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			h := mk(t, 100, time.Hour)
			wantRead(t, h, "u", Pos{}, 10, "")
			m1 := &Message{UserID: "u", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"u"}`)}
			b1 := &Message{RoutingKey: "news", Body: []byte("to everyone")}
			m2 := &Message{UserID: "u", RoutingKey: "bin", Body: []byte{0, 0xff, '\n', 0xc3}}
			v1 := &Message{UserID: "v", RoutingKey: "contract", Body: []byte("for v only")}
			b2 := &Message{RoutingKey: "news", Body: []byte{}}
			appendAll(t, h, m1, b1, m2, v1, b2)
			for _, c := range []struct {
				m   *Message
				seq uint64
				as  *Message // same epoch as
			}{{m1, 1, m2}, {m2, 2, m1}, {b1, 1, b2}, {b2, 2, b1}, {v1, 1, nil}} {
				if c.m.Seq != c.seq || !validEpoch(c.m.Epoch) || c.m.Epoch == "" || c.m.Time == 0 {
					t.Errorf("%q: position %v time %d, want seq %d in an epoch", c.m.Body, c.m.Pos(), c.m.Time, c.seq)
				}
				if c.as != nil && c.as.Epoch != c.m.Epoch {
					t.Errorf("%q: epoch %s, want the stream's %s", c.m.Body, c.m.Epoch, c.as.Epoch)
				}
			}
			if m1.Epoch == b1.Epoch || m1.Epoch == v1.Epoch {
				t.Errorf("streams share an epoch: %s %s %s", m1.Epoch, b1.Epoch, v1.Epoch)
			}

			w := wantRead(t, h, "u", Pos{}, 100, "", m1, m2)
			if w.Top != m2.Pos() {
				t.Errorf("top of u = %v, want %v", w.Top, m2.Pos())
			}
			wantRead(t, h, "", Pos{}, 100, "", b1, b2)
			wantRead(t, h, "v", Pos{}, 100, "", v1)
			wantRead(t, h, "w", Pos{}, 100, "")
			wantRead(t, h, "u", m1.Pos(), 100, "", m2)
			wantRead(t, h, "u", Pos{}, 1, "", m1)
			wantRead(t, h, "u", m2.Pos(), 100, "")
			wantRead(t, h, "u", m2.Pos(), 0, "")
			// A position names a place in one stream: u's read by v is another epoch.
			wantRead(t, h, "v", m2.Pos(), 100, ResetLost, v1)
			// Past the top: never handed out, not trusted; the window follows.
			wantRead(t, h, "u", Pos{Epoch: m2.Epoch, Seq: 3}, 100, ResetUnknown, m1, m2)
			// Another epoch (the stream was lost and started again).
			wantRead(t, h, "u", Pos{Epoch: NewEpoch(), Seq: 1}, 100, ResetLost, m1, m2)
			// A stream with no messages yet, read with a position of a lost one.
			wantRead(t, h, "w", Pos{Epoch: NewEpoch(), Seq: 4}, 100, ResetLost)
		})
	}
}

// TestHistoryTrim: a position older than what a stream still holds gets a reset and
// the window; one inside it resumes exactly.
func TestHistoryTrim(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			h := mk(t, 3, time.Hour)
			var ms []*Message
			for i := range 5 {
				m := &Message{UserID: "u", RoutingKey: "k", Body: []byte{byte('a' + i)}}
				appendAll(t, h, m)
				ms = append(ms, m)
			}
			wantRead(t, h, "u", Pos{}, 10, ResetExpired, ms[2:]...)
			wantRead(t, h, "u", ms[0].Pos(), 10, ResetExpired, ms[2:]...)
			wantRead(t, h, "u", ms[1].Pos(), 10, "", ms[2:]...)
			wantRead(t, h, "u", ms[3].Pos(), 10, "", ms[4])
		})
	}
}

// TestHistoryTTL: messages older than the TTL leave the window; a position at the top
// still resumes without a reset once they are gone, one below it does not.
func TestHistoryTTL(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			h := mk(t, 100, 200*time.Millisecond)
			m1 := &Message{UserID: "u", Body: []byte("1")}
			m2 := &Message{UserID: "u", Body: []byte("2")}
			appendAll(t, h, m1, m2)
			eventually(t, 5*time.Second, "messages older than the TTL leave", func() bool {
				w, err := h.Read(context.Background(), "u", Pos{}, 10, 0)
				return err == nil && len(w.Msgs) == 0
			})
			wantRead(t, h, "u", m2.Pos(), 10, "")
			wantRead(t, h, "u", m1.Pos(), 10, ResetExpired)
			m3 := &Message{UserID: "u", Body: []byte("3")}
			appendAll(t, h, m3)
			if m3.Epoch != m2.Epoch || m3.Seq != 3 {
				t.Errorf("after the TTL: position %v, want %s-3 (the epoch outlives the messages)", m3.Pos(), m2.Epoch)
			}
			wantRead(t, h, "u", m2.Pos(), 10, "", m3)
		})
	}
}

// TestHistoryReadBytes: a read stops before the message that would take its sizes
// past maxBytes, gives the first however large, and says it was cut; in Redis two
// reads of the same entries share the decoded messages.
func TestHistoryReadBytes(t *testing.T) {
	for name, mk := range historyImpls {
		t.Run(name, func(t *testing.T) {
			h := mk(t, 100, time.Hour)
			var ms []*Message
			for i := range 10 {
				m := &Message{RoutingKey: "k", Body: bytes.Repeat([]byte{'a' + byte(i)}, 100*(i+1))}
				appendAll(t, h, m)
				ms = append(ms, m)
			}
			ctx := context.Background()
			for _, tc := range []struct{ maxBytes, n int }{
				{0, 10}, {1, 1}, {ms[0].Size(), 1}, {ms[0].Size() + ms[1].Size(), 2}, {ms[0].Size() + ms[1].Size() - 1, 1}, {1 << 20, 10},
			} {
				w, err := h.Read(ctx, "", Pos{}, 100, tc.maxBytes)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if len(w.Msgs) != tc.n || w.Cut() != (tc.n < 10) {
					t.Errorf("read of %d bytes: got %d messages (cut %v), want %d", tc.maxBytes, len(w.Msgs), w.Cut(), tc.n)
				}
				for i, m := range w.Msgs {
					if !bytes.Equal(m.Body, ms[i].Body) {
						t.Errorf("read of %d bytes: message %d is %.10q…, want %.10q…", tc.maxBytes, i, m.Body, ms[i].Body)
					}
				}
			}
			a, err := h.Read(ctx, "", Pos{}, 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			b, err := h.Read(ctx, "", Pos{Epoch: a.Top.Epoch, Seq: 1}, 2, 0)
			if err != nil {
				t.Fatal(err)
			}
			if a.Msgs[1] != b.Msgs[0] || a.Msgs[2] != b.Msgs[1] {
				t.Errorf("two reads of the same entries got different *Message values: decoded per reader")
			}
		})
	}
}
