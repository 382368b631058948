package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/pushbridge/pushbridge/presence"
)

// replayPage is how many messages one history read returns while building a replay:
// large enough that a typical resume is one read, small enough to bound each read.
const replayPage = 500

// replayFromStart is the cursor before every message, read when a client's own cursor
// is unusable so that it still gets whatever the window holds.
const replayFromStart = "0"

// Attach registers c in the hub and, in the same step, hands load what c's user missed
// after cursor (at most limit messages; 0: all of the window). Holding mu, which Route
// also holds from "take the next id" to "queue to local connections", means no message
// can be routed between the replay read and the registration: each one is either in the
// replay or delivered to c live. load runs under mu, before c is registered, and must
// not block: it queues the replay ahead of anything live.
//
// An empty cursor starts from now. A malformed, unknown or expired cursor still
// attaches; the replay's Reset says why it is incomplete.
func (r *Router) Attach(ctx context.Context, c presence.Conn, cursor string, limit int, load func(*presence.Replay)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, err := r.replay(ctx, c.User(), cursor, limit)
	if err != nil {
		return err
	}
	load(rp)
	r.hub.Add(c)
	return nil
}

// replay reads, page by page, what user's connections should have read after cursor.
func (r *Router) replay(ctx context.Context, user, cursor string, limit int) (*presence.Replay, error) {
	head, err := r.history.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("read history head: %w", err)
	}
	rp := &presence.Replay{Head: head}
	if cursor == "" {
		return rp, nil
	}
	from := cursor
	if _, err := presence.ParseCursor(cursor); err != nil {
		rp.Reset, from = presence.ResetMalformed, replayFromStart
	}
	for {
		page := replayPage
		if limit > 0 {
			page = min(page, limit-len(rp.Messages))
		}
		msgs, complete, err := r.history.After(ctx, user, from, page)
		if errors.Is(err, presence.ErrBadCursor) && from != replayFromStart {
			rp.Reset, from = presence.ResetUnknown, replayFromStart
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		if !complete && rp.Reset == "" {
			rp.Reset = presence.ResetExpired
		}
		rp.Messages = append(rp.Messages, msgs...)
		if len(msgs) < page {
			return rp, nil
		}
		if limit > 0 && len(rp.Messages) >= limit {
			rp.More = true
			return rp, nil
		}
		from = msgs[len(msgs)-1].ID
	}
}
