package presence

import (
	"context"
	"errors"
	"strconv"
)

// History keeps the recent messages of each user and the recent broadcasts, so a client
// that comes back with the id of the last message it saw (its cursor) gets exactly what
// it missed.
type History interface {
	// Append records m and sets m.ID, a cursor greater than every earlier one, and
	// m.Prev, the ID of the newest message kept in the same stream before it.
	Append(ctx context.Context, m *Message) error
	// After returns what user's connections should have read after cursor — the
	// user's messages and the broadcasts — oldest first, at most limit of them.
	// complete is false when some of it has already left the window.
	After(ctx context.Context, user, cursor string, limit int) (msgs []*Message, complete bool, err error)
	// Head is the newest cursor, for a client that starts from now.
	Head(ctx context.Context) (string, error)
}

// ErrBadCursor is returned for a cursor that is malformed or was never handed out.
var ErrBadCursor = errors.New("unknown or malformed cursor")

// ParseCursor reads a cursor. Cursors are opaque to clients; here they are the
// decimal sequence number of a message.
func ParseCursor(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, ErrBadCursor
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, ErrBadCursor
	}
	return n, nil
}

// FormatCursor writes a cursor.
func FormatCursor(seq uint64) string { return strconv.FormatUint(seq, 10) }

// seqMessage is a message with its number in the history.
type seqMessage struct {
	seq uint64
	m   *Message
}

func (e seqMessage) numbered() (uint64, *Message) { return e.seq, e.m }

// mergeStreams interleaves two runs sorted by number, oldest first, up to limit: what
// a user's connections read is the user's stream and the broadcasts' merged by id.
func mergeStreams[E interface{ numbered() (uint64, *Message) }](a, b []E, limit int) []*Message {
	out := make([]*Message, 0, min(limit, len(a)+len(b)))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		sa, ma := uint64(0), (*Message)(nil)
		if len(a) > 0 {
			sa, ma = a[0].numbered()
		}
		if len(b) > 0 {
			if sb, mb := b[0].numbered(); ma == nil || sb < sa {
				out, b = append(out, mb), b[1:]
				continue
			}
		}
		out, a = append(out, ma), a[1:]
	}
	return out
}
