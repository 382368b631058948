package presence

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Receipts remembers which messages each user has confirmed, so that message.received
// goes to the backend at most once per user and message, however many tabs and
// instances confirm it.
type Receipts interface {
	// First records that user confirmed the message at pos and reports whether this
	// is the first such confirmation within ttl.
	First(ctx context.Context, user, pos string, ttl time.Duration) (bool, error)
}

// ReceiptPosition is where the message a client names by cursor sits in its stream:
// the key its receipt is deduplicated on, and what the history is asked for. Here a
// cursor is the message's own sequence number. Where cursors are per connection (the
// position of both of its streams), this is the one place that picks the message's
// own position out of it.
func ReceiptPosition(cursor string) (uint64, error) { return ParseCursor(cursor) }

// messageAt reads the message user's connections were sent at pos: the user's, or a
// broadcast. Nil when the history no longer holds it (or never did).
func messageAt(ctx context.Context, h History, user string, pos uint64) (*Message, error) {
	if pos == 0 {
		return nil, nil
	}
	ms, _, err := h.After(ctx, user, FormatCursor(pos-1), 1)
	if err == ErrBadCursor {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 || ms[0].ID != FormatCursor(pos) {
		return nil, nil
	}
	return ms[0], nil
}

var _ Receipts = (*MemoryReceipts)(nil)

// MemoryReceipts is Receipts of a single instance.
type MemoryReceipts struct {
	now func() time.Time

	mu     sync.Mutex
	seen   map[string]time.Time // user + "\x00" + pos -> when it expires
	sweeps int                  // First calls since the last sweep
}

// memReceiptsSweep is how many confirmations pass between sweeps of expired ones:
// memory stays bounded by what arrives within ttl, at a small amortised cost.
const memReceiptsSweep = 1024

func NewMemoryReceipts() *MemoryReceipts {
	return &MemoryReceipts{now: time.Now, seen: make(map[string]time.Time)}
}

func (r *MemoryReceipts) First(_ context.Context, user, pos string, ttl time.Duration) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.sweeps++; r.sweeps >= memReceiptsSweep {
		r.sweeps = 0
		for k, exp := range r.seen {
			if now.After(exp) {
				delete(r.seen, k)
			}
		}
	}
	k := user + "\x00" + pos
	if exp, ok := r.seen[k]; ok && !now.After(exp) {
		return false, nil
	}
	r.seen[k] = now.Add(ttl)
	return true, nil
}

var _ Receipts = (*RedisReceipts)(nil)

// RedisReceipts is Receipts shared by every instance: one SET NX per confirmation, in
// the user's slot.
type RedisReceipts struct {
	rdb    redis.UniversalClient
	prefix string
}

func NewRedisReceipts(rdb redis.UniversalClient, opts RedisOptions) *RedisReceipts {
	return &RedisReceipts{rdb: rdb, prefix: opts.withDefaults().Prefix}
}

// receiptKey is <P>{u:<user>}:rcpt:<pos>: in the user's slot, beside the rest of the
// user's keys on a cluster.
func (r *RedisReceipts) receiptKey(user, pos string) string {
	return r.prefix + "{u:" + user + "}:rcpt:" + pos
}

func (r *RedisReceipts) First(ctx context.Context, user, pos string, ttl time.Duration) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, r.receiptKey(user, pos), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("receipt: %w", err)
	}
	return ok, nil
}

// formatPos writes a receipt position.
func formatPos(pos uint64) string { return strconv.FormatUint(pos, 10) }
