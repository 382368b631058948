package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

	// writeErr is why the last heartbeat or dispatch failed (Redis refuses writes:
	// OOM, READONLY, a timeout), nil once one succeeds: /readyz says so.
	writeErr atomic.Pointer[error]
}

// noteWrite records whether Redis took the last write of a heartbeat or a dispatch
// (Consumer's Wrote): a failure turns /readyz 503 at once, the next success of either
// turns it back.
func (s *shared) noteWrite(err error) {
	if err != nil {
		s.writeErr.Store(&err)
	} else {
		s.writeErr.Store(nil)
	}
}

// relayLostHint is how long the relay may stay unsubscribed before this instance's
// clients are told to reconnect (elsewhere: /readyz is 503 meanwhile) instead of
// waiting silently for messages that only reach the history.
func relayLostHint(presenceTTL time.Duration) time.Duration { return 3 * presenceTTL }

// relayWatchEvery is how often the relay's state is looked at for the hint.
const relayWatchEvery = time.Second

// notReady says why Redis keeps this instance from serving: writes refused, or the
// relay not subscribed; nil when neither.
func (s *shared) notReady() error {
	if err := s.writeErr.Load(); err != nil {
		return fmt.Errorf("redis refuses writes: %w", *err)
	}
	if s.be.relayUp != nil && !s.be.relayUp() {
		return errors.New("redis relay not subscribed")
	}
	return nil
}

// watchRelay sends this instance's clients away, spread over time, once the relay has
// been down for relayLostHint, once per outage, until ctx ends.
func (s *shared) watchRelay(ctx context.Context, hub *presence.Hub, hint, spread time.Duration) {
	if s.be.relayUp == nil {
		return
	}
	t := time.NewTicker(relayWatchEvery)
	defer t.Stop()
	var downSince time.Time
	hinted := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch {
		case s.be.relayUp():
			downSince, hinted = time.Time{}, false
		case downSince.IsZero():
			downSince = time.Now()
		case !hinted && time.Since(downSince) >= hint:
			hinted = true
			s.log.Warn("relay lost; telling clients to reconnect elsewhere", "down", time.Since(downSince).Round(time.Second), "connections", hub.Count())
			dctx, cancel := context.WithTimeout(ctx, hint)
			hub.Drain(dctx, spread)
			cancel()
		}
	}
}

// startShared registers this instance with one beat, starts the heartbeat and the
// relay, and returns once the relay listens: from then on a message dispatched
// anywhere reaches this instance's connections, so it may take deliveries and clients.
// Both goroutines outlive ctx (a drain still delivers); leave and stop end them.
//
// transBeat, when not nil, runs after the presence refresh of each beat: it claims the
// due user.offline events (see presence.RedisTransitions.Beat).
func startShared(ctx context.Context, cfg *Config, be *backend, hub *presence.Hub, transBeat func(context.Context, bool) error, log *slog.Logger) (*shared, error) {
	started := time.Now()
	// lastOK is when the last beat that succeeded began: the keys it set live at least
	// BRIDGE_PRESENCE_TTL from then. Only the heartbeat goroutine uses it after the
	// first beat, which runs here before that goroutine starts.
	var lastOK time.Time
	failed := false // the last beat failed: presence may have lapsed meanwhile
	beat := func(ctx context.Context) (err error) {
		defer func() { failed = err != nil }()
		begun := time.Now()
		lapsed, err := be.instances.Beat(ctx, presence.Instance{ID: cfg.InstanceID, Started: started, Conns: hub.Count(), Users: hub.UserCount()})
		if err != nil {
			return err
		}
		first := lastOK.IsZero()
		lapsed = !first && (lapsed || failed || begun.Sub(lastOK) >= cfg.PresenceTTL)
		var tops presence.Tops
		if be.refresh != nil {
			if tops, err = be.refresh(ctx); err != nil {
				return err
			}
		}
		lastOK = begun
		if transBeat != nil {
			// Not the beat's failure: presence is written; the claims are retried next time.
			if err := transBeat(ctx, lapsed); err != nil {
				log.Warn("heartbeat: user.online/user.offline", "err", err)
			}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.PresenceTTL)
		defer cancel()
		switch {
		case lapsed:
			// While this instance was out of presence, what was dispatched for its
			// users went only to the history: catch every connection up from it.
			hub.CatchUp(rctx, "presence lapsed (a late or failed heartbeat, or the lease was gone)")
		case be.refresh != nil:
			if n, err := hub.Heal(rctx, tops); n > 0 || err != nil {
				log.Info("heartbeat found connections behind their streams; caught up", "connections", n, "err", err)
			}
		}
		return nil
	}
	if err := beat(ctx); err != nil {
		return nil, fmt.Errorf("register instance: %w", err)
	}
	s := &shared{be: be, id: cfg.InstanceID, log: log}
	beatAndNote := func(ctx context.Context) error {
		err := beat(ctx)
		s.noteWrite(err)
		return err
	}
	bctx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	rctx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	s.beat, s.relay = stopBeat, stopRelay
	s.wg.Go(func() {
		presence.Heartbeat(bctx, cfg.PresenceTTL, beatAndNote, func(err error) { log.Warn("heartbeat failed", "err", err) })
	})
	s.wg.Go(func() {
		s.watchRelay(bctx, hub, relayLostHint(cfg.PresenceTTL), min(maxReconnectSpread, relayLostHint(cfg.PresenceTTL)))
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
