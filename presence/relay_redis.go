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

	Subscribes atomic.Int64 // times the subscription was (re)established
	Malformed  atomic.Int64 // payloads dropped because they do not parse
	Foreign    atomic.Int64 // payloads dropped because they name another deployment's namespace

	ns string      // relayNamespace
	up atomic.Bool // subscribed on both channels now
}

// Up reports whether the relay is subscribed now: while it is not, messages for this
// instance's connections only reach the history (readiness says so).
func (r *RedisRelay) Up() bool { return r.up.Load() }

// NewRedisRelay returns the relay of instance opts.Instance under opts.Prefix; it
// logs its reconnects to log (nil: nowhere).
func NewRedisRelay(rdb redis.UniversalClient, opts RedisOptions, log *slog.Logger) *RedisRelay {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisRelay{rdb: rdb, keys: redisKeys(opts.Prefix), instance: opts.Instance, log: log, ping: relayPingEvery, ns: relayNamespace(rdb, opts.Prefix)}
}

func (r *RedisRelay) Send(ctx context.Context, instance string, ms ...*Message) error {
	return r.publish(ctx, relayInstance(r.ns, instance), ms)
}

func (r *RedisRelay) Broadcast(ctx context.Context, ms ...*Message) error {
	return r.publish(ctx, relayBroadcast(r.ns), ms)
}

func (r *RedisRelay) publish(ctx context.Context, channel string, ms []*Message) error {
	if len(ms) == 0 {
		return nil
	}
	b := encodeRelay(r.ns, r.instance, ms...)
	if err := publishCmd(ctx, r.rdb, channel, b).Err(); err != nil {
		return fmt.Errorf("relay publish: %w", err)
	}
	return nil
}

// Run listens until ctx ends. Each subscription is a fresh connection; when it fails
// it is replaced after a pause, and subscribed is called again once the new one is
// confirmed on both channels.
// Flush returns at once: what Redis pub/sub still carries to this instance cannot be
// waited for, and need not be — it is in the shared history, and the clients a drain
// sends away get it when they resume with their cursor.
func (r *RedisRelay) Flush(context.Context) error { return nil }

func (r *RedisRelay) Run(ctx context.Context, deliver func([]*Message), subscribed func()) error {
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
		if cc, ok := r.rdb.(*redis.ClusterClient); ok {
			// The shard may have failed over (or moved: a MOVED answer): read the slot
			// map again before subscribing again.
			cc.ReloadState(ctx)
		}
		r.log.Warn("relay subscription lost; subscribing again", "err", err, "after", relayRetryPause)
		pause.Reset(relayRetryPause)
	}
}

// session subscribes to the instance's channel and the broadcast channel, and
// delivers until a subscription fails or ctx ends. On one server both are on one
// connection (SUBSCRIBE); on a cluster each is a sharded channel (SSUBSCRIBE) on the
// shard of its slot, so each has a connection of its own, and the relay is up once
// both are confirmed.
func (r *RedisRelay) session(ctx context.Context, deliver func([]*Message), subscribed func()) error {
	defer r.up.Store(false)
	bcast := relayBroadcast(r.ns)
	chans := []string{relayInstance(r.ns, r.instance), bcast}
	groups := [][]string{chans}
	if isCluster(r.rdb) {
		groups = [][]string{chans[:1], chans[1:]}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(groups))
	var confirmed atomic.Int32 // groups whose subscription Redis confirmed
	var mu sync.Mutex          // deliveries of the groups, one at a time, as on one connection
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, g := range groups {
		wg.Go(func() {
			errc <- r.listen(sctx, g, func() {
				if int(confirmed.Add(1)) == len(groups) {
					r.Subscribes.Add(1)
					r.up.Store(true)
					subscribed()
				}
			}, func(x *redis.Message) {
				mu.Lock()
				defer mu.Unlock()
				r.handle(x, bcast, deliver)
			})
		})
	}
	err := <-errc // the first to end ends them all
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// listen subscribes to chans on one connection and hands each message to handle
// until the connection fails or ctx ends; confirm is called once Redis confirmed
// every channel.
func (r *RedisRelay) listen(ctx context.Context, chans []string, confirm func(), handle func(*redis.Message)) error {
	sharded := isCluster(r.rdb)
	var ps *redis.PubSub
	if sharded {
		ps = r.rdb.SSubscribe(ctx)
	} else {
		ps = r.rdb.Subscribe(ctx)
	}
	defer ps.Close()
	// Receive does not watch ctx; closing the subscription is what wakes it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	var err error
	kind := "subscribe"
	if sharded {
		kind = "ssubscribe"
		err = ps.SSubscribe(ctx, chans...)
	} else {
		err = ps.Subscribe(ctx, chans...)
	}
	if err != nil {
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
			if x.Kind == kind && x.Count == len(chans) {
				confirm()
			}
		case *redis.Message:
			handle(x)
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
func (r *RedisRelay) handle(x *redis.Message, bcast string, deliver func([]*Message)) {
	ms, from, err := decodeRelay(r.ns, []byte(x.Payload))
	if err != nil {
		if err == errForeignRelay {
			r.Foreign.Add(1)
		} else {
			r.Malformed.Add(1)
		}
		r.log.Warn("relay: dropped a payload", "why", err, "channel", x.Channel, "bytes", len(x.Payload))
		return
	}
	if x.Channel == bcast && from == r.instance {
		return // the sender delivered it already
	}
	deliver(ms)
}

// publishCmd publishes payload on channel through c (the client, or a pipeline of
// rdb): sharded (SPUBLISH, to the shard of the channel's slot) on a cluster, where a
// plain PUBLISH would be sent to every node; PUBLISH on one server.
func publishCmd(ctx context.Context, rdb redis.UniversalClient, channel string, payload []byte) *redis.IntCmd {
	if isCluster(rdb) {
		return rdb.SPublish(ctx, channel, payload)
	}
	return rdb.Publish(ctx, channel, payload)
}
