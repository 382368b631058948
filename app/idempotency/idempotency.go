// Package idempotency remembers what POST /api/publish answered for an
// Idempotency-Key, so a caller that retries (after a timeout, a 503, a lost
// connection) gets the first answer instead of publishing twice. With Redis the
// answers are kept there, so whichever instance the retry reaches answers the same;
// without, in this process's memory.
package idempotency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Result is the answer remembered for a key: status and body byte for byte, and the
// fingerprint of the request that produced it.
type Result struct {
	Status      int    `json:"status"`
	Body        []byte `json:"body"`
	Fingerprint string `json:"fp"`
}

// Claim is one request's hold on a key while it publishes.
type Claim struct {
	Key   string
	token string // tells this hold from a later one on the same key
}

// Store keeps results by key for its window. Claims make concurrent requests with
// one key publish once: the first claims it, the others wait for its result.
type Store interface {
	// Claim returns the result remembered for key; else, when nobody holds key,
	// holds it for this caller (who must Save or Release it); else neither: another
	// request holds it, and the caller asks again later.
	Claim(ctx context.Context, key string) (*Result, *Claim, error)
	// Save remembers res for c's key for the window, in place of the claim.
	Save(ctx context.Context, c *Claim, res Result) error
	// Release lets c's key go without a result, if c still holds it.
	Release(ctx context.Context, c *Claim) error
}

// Limits of a request that waits for another with its key.
const (
	// ClaimTTL outlives the longest publish (its confirm wait is 10 s), so a claim
	// never lapses under a live request; a crashed instance's claim frees the key
	// after it.
	ClaimTTL = 30 * time.Second
	// pollMin and pollMax pace a waiting request's checks: a publish takes
	// milliseconds, so the first checks come soon, later ones less often.
	pollMin = 5 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// MaxMemoryKeys bounds the in-memory store: at 1,000 keyed publishes a second for a
// 2-minute window it holds them all, in tens of MB at most (a key is ≤255 bytes, an
// answer a few hundred). Past it the oldest is forgotten, and a late retry of it
// publishes again under the same message-id, which the consumer recognises.
const MaxMemoryKeys = 120_000

var (
	// ErrUnavailable: the store (Redis) cannot be reached, so no request with a key
	// can be answered safely.
	ErrUnavailable = errors.New("the Idempotency-Key store is unavailable")
	// ErrMismatch: the key was used for another request (another routing key, user
	// or body) within the window.
	ErrMismatch = errors.New("this Idempotency-Key was used for another request")
	// ErrBusy: a request with the key is still publishing after the wait.
	ErrBusy = errors.New("a request with this Idempotency-Key is still in progress")
)

// Do answers a request with key and fingerprint fp: the remembered result when there
// is one (replayed true), else publish's, which is remembered when publish says so.
// Concurrent requests with key run publish once; the others wait for its result, up
// to maxWait (then ErrBusy). A publish that fails, or whose result is not to be
// kept, lets the key go, so a retry publishes.
func Do(ctx context.Context, s Store, key, fp string, maxWait time.Duration, log *slog.Logger,
	publish func() (res Result, keep bool, err error)) (Result, bool, error) {
	deadline := time.Now().Add(maxWait)
	for wait := pollMin; ; wait = min(2*wait, pollMax) {
		res, c, err := s.Claim(ctx, key)
		switch {
		case err != nil:
			return Result{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		case res != nil && res.Fingerprint != fp:
			return Result{}, false, ErrMismatch
		case res != nil:
			return *res, true, nil
		case c != nil:
			return run(ctx, s, c, fp, log, publish)
		}
		if time.Now().After(deadline) {
			return Result{}, false, ErrBusy
		}
		select {
		case <-ctx.Done():
			return Result{}, false, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// run publishes under claim c and remembers or releases. Both outlive the request:
// what was published must be remembered even if the caller hung up.
func run(ctx context.Context, s Store, c *Claim, fp string, log *slog.Logger,
	publish func() (Result, bool, error)) (Result, bool, error) {
	res, keep, err := publish()
	bg := context.WithoutCancel(ctx)
	if err != nil || !keep {
		if rerr := s.Release(bg, c); rerr != nil {
			log.Warn("idempotency key not released; it frees itself", "key", c.Key, "after", ClaimTTL, "err", rerr)
		}
		return res, false, err
	}
	res.Fingerprint = fp
	if serr := s.Save(bg, c, res); serr != nil {
		// Published all the same: answer so. A retry with this key publishes again,
		// under the same message-id, which the consumer recognises.
		log.Warn("idempotency result not remembered", "key", c.Key, "err", serr)
	}
	return res, false, nil
}
