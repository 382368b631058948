package presence

import (
	"context"
	"fmt"
	"time"
)

// MaxAckIDs bounds the ids of one confirmation (a frame, a request): a page confirms
// what it just handled, a few at a time, and each id costs a history read.
const MaxAckIDs = 100

// Ack takes user's confirmation that its client handled the messages ids names (their
// cursors) and sends message.received for the targeted message each names (see
// ReceiptPosition) while the history still holds it, at most once per user and
// message across tabs and instances. An id of a message no longer held, or never sent to user, is ignored:
// a receipt names only what the backend sent this user. A malformed id is an error
// (ErrBadCursor); the others are still confirmed.
func (h *Hub) Ack(ctx context.Context, user string, ids []string) error {
	if h.events == nil {
		return nil
	}
	var bad error
	for _, id := range ids {
		pos, err := ReceiptPosition(id)
		if err != nil {
			bad = fmt.Errorf("%w: %.40q", ErrBadCursor, id)
			continue
		}
		m, err := messageAt(ctx, h.history, user, pos)
		if err != nil {
			return fmt.Errorf("%w (%w)", ErrUnavailable, err)
		}
		if m == nil {
			continue
		}
		first, err := h.receipts.First(ctx, user, formatPos(pos), h.receiptTTL)
		if err != nil {
			return fmt.Errorf("%w (%w)", ErrUnavailable, err)
		}
		if first {
			h.events.Emit(Event{Type: EventReceived, User: user, At: time.Now(), Message: m})
		}
	}
	return bad
}

// Pong records that user's client answered the liveness token of a stream another
// instance may hold (an SSE heartbeat: handlers/transport/sse_echo.go), for ttl. It
// shares the receipts' store, and its SET NX, under a key of its own kind.
func (h *Hub) Pong(ctx context.Context, user, token string, ttl time.Duration) error {
	if _, err := h.receipts.First(ctx, user, pongKey(token), ttl); err != nil {
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return nil
}

// Ponged reports whether user's client answered token through any instance (see
// Pong). Asking records the token too, so a second question says yes: ask once.
func (h *Hub) Ponged(ctx context.Context, user, token string, ttl time.Duration) (bool, error) {
	first, err := h.receipts.First(ctx, user, pongKey(token), ttl)
	if err != nil {
		return false, fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return !first, nil
}

// pongKey keeps liveness tokens apart from receipt positions (<epoch>-<seq>).
func pongKey(token string) string { return "pong:" + token }
