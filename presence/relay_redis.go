package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Relay = (*RedisRelay)(nil)

// Timing of the relay's subscription.
const (
	// relayPingEvery is how long a silent subscription waits before it pings, and then
	// how long it waits for the pong: a Redis that vanished without closing the socket
	// is noticed within about twice this.
	relayPingEvery = 5 * time.Second
	// relayRetryPause spaces the attempts to subscribe again while Redis is down, so
	// an outage costs a few dials a second, not a hot loop.
	relayRetryPause = 500 * time.Millisecond
)

// RedisRelay carries messages over Redis pub/sub: a channel per instance, and one
// broadcast channel every instance listens to.
type RedisRelay struct {
	rdb      redis.UniversalClient
	keys     redisKeys
	instance string
	log      *slog.Logger
	ping     time.Duration // relayPingEvery; shorter in tests

	Subscribes  atomic.Int64 // times the subscription was (re)established
	Undecodable atomic.Int64 // payloads that were not relayed messages, dropped
}

// NewRedisRelay returns the relay of instance opts.Instance under opts.Prefix; it
// logs its reconnects to log (nil: nowhere).
func NewRedisRelay(rdb redis.UniversalClient, opts RedisOptions, log *slog.Logger) *RedisRelay {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisRelay{rdb: rdb, keys: redisKeys(opts.Prefix), instance: opts.Instance, log: log, ping: relayPingEvery}
}

// Run listens until ctx ends. Each subscription is a fresh connection; when it fails
// it is replaced after a pause, and subscribed is called again once the new one is
// confirmed on both channels.
// Flush returns at once: what Redis pub/sub still carries to this instance cannot be
// waited for, and need not be — it is in the shared history, and the clients a drain
// sends away get it when they resume with their cursor.
func (r *RedisRelay) Flush(context.Context) error { return nil }

func (r *RedisRelay) Run(ctx context.Context, deliver func(*Message), subscribed func()) error {
	if r.instance == "" {
		return errors.New("relay: no instance id")
	}
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-pause.C:
		}
		err := r.session(ctx, deliver, subscribed)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("relay subscription lost; subscribing again", "err", err, "after", relayRetryPause)
		pause.Reset(relayRetryPause)
	}
}

// session subscribes on one connection and delivers until it fails or ctx ends.
func (r *RedisRelay) session(ctx context.Context, deliver func(*Message), subscribed func()) error {
	ps := r.rdb.Subscribe(ctx)
	defer ps.Close()
	// Receive does not watch ctx; closing the subscription is what wakes it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	bcast := r.keys.relayBroadcast()
	chans := []string{r.keys.relayInstance(r.instance), bcast}
	if err := ps.Subscribe(ctx, chans...); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	var heard atomic.Int64 // when the connection last said anything, unix ns
	heard.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() { r.watch(ctx, ps, &heard, done) })
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		heard.Store(time.Now().UnixNano())
		switch x := msg.(type) {
		case *redis.Subscription:
			if x.Kind == "subscribe" && x.Count == len(chans) {
				r.Subscribes.Add(1)
				subscribed()
			}
		case *redis.Message:
			r.handle(x, bcast, deliver)
		}
	}
}

// watch pings a subscription that has been silent for r.ping, and closes it (ending
// its session) when the pong has not come within another r.ping:
// a Redis that vanished without closing the socket is noticed. It returns when done
// is closed.
func (r *RedisRelay) watch(ctx context.Context, ps *redis.PubSub, heard *atomic.Int64, done <-chan struct{}) {
	t := time.NewTicker(r.ping / 2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		switch silent := time.Since(time.Unix(0, heard.Load())); {
		case silent > 2*r.ping:
			r.log.Warn("relay subscription silent; closing it", "silent", silent.Round(time.Millisecond))
			ps.Close()
			return
		case silent > r.ping:
			_ = ps.Ping(ctx) // a failed write surfaces in Receive
		}
	}
}

// handle decodes one payload and delivers it, unless it is our own broadcast.
func (r *RedisRelay) handle(x *redis.Message, bcast string, deliver func(*Message)) {
	m, from, err := decodeRelay([]byte(x.Payload))
	if err != nil {
		r.Undecodable.Add(1)
		r.log.Warn("relay: dropped a payload that is not a relayed message", "channel", x.Channel, "bytes", len(x.Payload))
		return
	}
	if x.Channel == bcast && from == r.instance {
		return // the sender delivered it already
	}
	deliver(m)
}
