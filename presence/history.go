package presence

import (
	"context"
	"time"
)

// History keeps the recent messages of each user and the recent broadcasts, each in a
// stream of its own with its own epoch and dense sequence, so a client that comes back
// with its cursor gets exactly what it missed (docs/redis.md, "Streams, positions and
// cursors").
type History interface {
	// Append records m in its stream (m.UserID's, or the broadcasts' when empty) and
	// sets m.Epoch and m.Seq — the next number of the stream, in a new epoch when the
	// stream has none — and m.Time.
	Append(ctx context.Context, m *Message) error
	// Read returns what the stream of user ("" for the broadcasts) holds after from,
	// oldest first, at most limit messages (0: none, only the top) and, with maxBytes
	// > 0, no more than fit in maxBytes by their sizes (Message.Size) — the first is
	// given however large, so a reader always gets on — and the stream's top. Window.Reset
	// is "" when the messages are everything after from, else why not: then they are
	// what the window holds (from its start when from's epoch is not the stream's, or
	// from is past the top).
	Read(ctx context.Context, user string, from Pos, limit, maxBytes int) (Window, error)
}

// Window is what History.Read found.
type Window struct {
	Msgs  []*Message
	Top   Pos    // the stream's newest position; Epoch "" when the stream has none
	Reset string // "" when Msgs continue from exactly; else a Reset* reason
}

// Cut reports whether the read stopped short of the top (at its limit or its bytes):
// more of the stream follows its last message.
func (w Window) Cut() bool {
	return len(w.Msgs) > 0 && w.Msgs[len(w.Msgs)-1].Epoch == w.Top.Epoch && w.Msgs[len(w.Msgs)-1].Seq < w.Top.Seq
}

// windowReset says whether a stream whose newest position is top and whose oldest
// kept message is first (0: none kept) still holds everything after from.
func windowReset(from, top Pos, first uint64) string {
	switch {
	case top.Epoch == "" && from.Epoch == "":
		return ""
	case top.Epoch == "" || (from.Epoch != "" && from.Epoch != top.Epoch):
		return ResetLost
	case from.Seq > top.Seq:
		return ResetUnknown
	case from.Seq == top.Seq:
		return ""
	case first == 0 || first > from.Seq+1:
		return ResetExpired
	}
	return ""
}

// readStart is where a read after from begins in a stream at top: right after from
// when from is a place in it, else at the start of what it holds.
func readStart(from, top Pos) uint64 {
	if (from.Epoch != "" && from.Epoch != top.Epoch) || from.Seq > top.Seq {
		return 0
	}
	return from.Seq
}

// metaTTL is how long a stream's epoch and top outlive its last message: much longer
// than the messages (BRIDGE_HISTORY_TTL), so a client silent for a while whose cursor
// is at the top resumes without a reset; only after this long a new epoch starts.
func metaTTL(historyTTL time.Duration) time.Duration {
	return max(24*time.Hour, 2*historyTTL)
}
