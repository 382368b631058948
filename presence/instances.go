package presence

import (
	"context"
	"time"
)

// Instance is one running Pushbridge process as the registry knows it.
type Instance struct {
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	Conns   int       `json:"conns"` // connections it held at its last heartbeat
	Users   int       `json:"users"` // distinct users it held at its last heartbeat
}

// Instances is the registry of live instances. An instance beats every TTL/3 (see
// Heartbeat); one that stops beating — it crashed, or lost Redis — drops out of List
// within the TTL with nobody cleaning up after it.
type Instances interface {
	// Beat records inst as live for one more TTL. It reports whether inst's lease had
	// lapsed (it was not registered, or its last beat is older than the TTL): while
	// it was, dispatchers may have skipped this instance, so what they dispatched is
	// only in the history.
	Beat(ctx context.Context, inst Instance) (lapsed bool, err error)
	// Leave removes the instance at once: a clean stop. Its presence in each user's
	// entry goes with its drained connections, or with their leases.
	Leave(ctx context.Context, id string) error
	// List returns the live instances ordered by ID.
	List(ctx context.Context) ([]Instance, error)
}

// Heartbeat calls beat every ttl/3 until ctx ends, so one lost beat (a slow Redis, a
// pause) does not yet make the instance look dead. A failed beat is handed to
// onError and retried at the next tick. Call beat once yourself before Heartbeat, so
// the instance is registered before it takes connections.
func Heartbeat(ctx context.Context, ttl time.Duration, beat func(context.Context) error, onError func(error)) {
	every := max(ttl/3, time.Millisecond) // a ticker needs a positive period
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A beat that takes longer than a tick is already late; give up on it.
		bctx, cancel := context.WithTimeout(ctx, every)
		err := beat(bctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			onError(err)
		}
	}
}
