package presence

import (
	"context"
	"fmt"
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
// the key its receipt is deduplicated on, and what the history is asked for. A cursor
// is a connection's position in both of its streams just after a message; receipts
// are for the user's own (targeted) messages, so this is the user-stream part: the
// newest targeted message the connection had when it was given that id. The one place
// that picks a message's own position out of a cursor.
func ReceiptPosition(cursor string) (Pos, error) {
	c, err := ParseCursor(cursor)
	if err != nil {
		return Pos{}, err
	}
	return c.User, nil
}

// messageAt reads user's targeted message at pos. Nil when the history no longer
// holds it (or never did: another epoch, a position past the top).
func messageAt(ctx context.Context, h History, user string, pos Pos) (*Message, error) {
	if pos.Seq == 0 || pos.Epoch == "" {
		return nil, nil
	}
	w, err := h.Read(ctx, user, Pos{Epoch: pos.Epoch, Seq: pos.Seq - 1}, 1, 0)
	if err != nil {
		return nil, err
	}
	if w.Reset != "" || len(w.Msgs) == 0 || w.Msgs[0].Epoch != pos.Epoch || w.Msgs[0].Seq != pos.Seq {
		return nil, nil
	}
	return w.Msgs[0], nil
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

// formatPos writes a receipt position: <epoch>-<seq>.
func formatPos(pos Pos) string { return pos.String() }
