package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

// shared runs what ties this instance to the others: the heartbeat that keeps it (and
// its connections) in presence, and the relay that brings it messages.
type shared struct {
	be    *backend
	id    string
	log   *slog.Logger
	wg    sync.WaitGroup
	beat  context.CancelFunc
	relay context.CancelFunc
	once  sync.Once
}

// startShared registers this instance with one beat, starts the heartbeat and the
// relay, and returns once the relay listens: from then on a message dispatched
// anywhere reaches this instance's connections, so it may take deliveries and clients.
// Both goroutines outlive ctx (a drain still delivers); leave and stop end them.
func startShared(ctx context.Context, cfg *Config, be *backend, hub *presence.Hub, log *slog.Logger) (*shared, error) {
	started := time.Now()
	// lastOK is when the last beat that succeeded began: the keys it set live at least
	// BRIDGE_PRESENCE_TTL from then. Only the heartbeat goroutine uses it after the
	// first beat, which runs here before that goroutine starts.
	var lastOK time.Time
	beat := func(ctx context.Context) error {
		begun := time.Now()
		if err := be.instances.Beat(ctx, presence.Instance{ID: cfg.InstanceID, Started: started, Conns: hub.Count()}); err != nil {
			return err
		}
		lapsed := !lastOK.IsZero() && begun.Sub(lastOK) >= cfg.PresenceTTL
		if be.refresh != nil {
			dirLapsed, err := be.refresh(ctx)
			if err != nil {
				return err
			}
			lapsed = lapsed || dirLapsed
		}
		lastOK = begun
		if lapsed {
			// While this instance was out of presence, what was dispatched for its
			// users went only to the history: catch every connection up from it.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.PresenceTTL)
			defer cancel()
			hub.CatchUp(rctx, "presence lapsed (a late heartbeat)")
		}
		return nil
	}
	if err := beat(ctx); err != nil {
		return nil, fmt.Errorf("register instance: %w", err)
	}
	s := &shared{be: be, id: cfg.InstanceID, log: log}
	bctx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	rctx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	s.beat, s.relay = stopBeat, stopRelay
	s.wg.Go(func() {
		presence.Heartbeat(bctx, cfg.PresenceTTL, beat, func(err error) { log.Warn("heartbeat failed", "err", err) })
	})
	relayDone := make(chan error, 1)
	s.wg.Go(func() { relayDone <- hub.Listen(rctx, be.relay) })
	t := time.NewTimer(relayStartTimeout)
	defer t.Stop()
	select {
	case <-hub.Listening():
		return s, nil
	case err := <-relayDone:
		s.stop()
		return nil, fmt.Errorf("relay: %w", cmp.Or(err, errors.New("stopped before it listened")))
	case <-t.C:
		s.stop()
		return nil, fmt.Errorf("relay: not subscribed within %s", relayStartTimeout)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// flush waits until what this instance dispatched to itself has reached its hub (see
// Relay.Flush): called after the last delivery was acked and before the clients are
// sent away.
func (s *shared) flush(ctx context.Context) {
	if err := s.be.relay.Flush(ctx); err != nil {
		s.log.Warn("relay flush before the drain", "err", err)
	}
}

// leave ends the heartbeat and removes this instance and its connections from
// presence at once (a clean stop), then stops the relay. Call it once the hub drained.
func (s *shared) leave(ctx context.Context) {
	s.once.Do(func() {
		s.beat()
		if err := s.be.instances.Leave(ctx, s.id); err != nil {
			s.log.Warn("leave presence", "err", err)
		}
		s.relay()
		s.wg.Wait()
	})
}

// stop ends both goroutines without leaving presence (a failed start, or after leave).
func (s *shared) stop() {
	s.once.Do(func() {
		s.beat()
		s.relay()
		s.wg.Wait()
	})
}
