package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushbridge/pushbridge/app/idempotency"
	"github.com/pushbridge/pushbridge/presence"
)

// backend is the state the instances share: the live instances, the directory of
// connections, the history, and the relay and dispatcher between instances. Without
// REDIS_URL every part is in memory and this process is the only instance; the hub and
// the consumer run the same code either way.
type backend struct {
	instances presence.Instances
	dir       presence.Directory
	history   presence.History
	relay     presence.Relay
	disp      presence.Dispatcher
	receipts  presence.Receipts
	idem      idempotency.Store // /api/publish's answers by Idempotency-Key
	// refresh rewrites this instance's presence with each beat and reads the tops of
	// its connections' streams, for Hub.Heal; nil in memory, where nothing is lost.
	refresh func(context.Context) (presence.Tops, error)
	ping    func(context.Context) error // Redis answers; nil in memory
	// relayUp says whether the relay is subscribed now; nil in memory (always).
	relayUp func() bool
	// relayDropped counts the relay payloads dropped, by reason; nil in memory.
	relayDropped func() (malformed, foreign int64)
	// transitions makes the Redis form of user.online / user.offline; nil in memory.
	transitions func(grace time.Duration, events presence.Events) *presence.RedisTransitions
	// publishFailed counts the relay payloads the dispatcher could not publish; nil
	// in memory (never).
	publishFailed func() int64
	close         func()
}

// newBackend connects to Redis when cfg names one, else builds the in-memory parts.
func newBackend(ctx context.Context, cfg *Config, log *slog.Logger) (*backend, error) {
	if cfg.RedisURL == "" {
		return memoryBackend(cfg.InstanceID, presence.NewMemoryHistory(cfg.HistorySize, cfg.HistoryTTL), cfg.PresenceTTL), nil
	}
	rdb, err := presence.NewRedisClient(ctx, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	ro := presence.RedisOptions{
		Prefix: cfg.RedisPrefix, Instance: cfg.InstanceID, PresenceTTL: cfg.PresenceTTL,
		HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL,
	}
	dir := presence.NewRedisDirectory(rdb, ro)
	relay := presence.NewRedisRelay(rdb, ro, log)
	disp := presence.NewRedisDispatcher(rdb, ro)
	return &backend{
		instances:     presence.NewRedisInstances(rdb, ro),
		dir:           dir,
		history:       presence.NewRedisHistory(rdb, ro),
		relay:         relay,
		disp:          disp,
		receipts:      presence.NewRedisReceipts(rdb, ro),
		idem:          idempotency.NewRedis(rdb, cfg.RedisPrefix, presence.DedupeWindow),
		refresh:       dir.Refresh,
		ping:          func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		relayUp:       relay.Up,
		relayDropped:  func() (int64, int64) { return relay.Malformed.Load(), relay.Foreign.Load() },
		publishFailed: disp.PublishFailed.Load,
		transitions: func(grace time.Duration, events presence.Events) *presence.RedisTransitions {
			return presence.NewRedisTransitions(rdb, ro, grace, events, log)
		},
		close: func() { rdb.Close() },
	}, nil
}

// memoryBackend is one instance with everything in memory, history given.
func memoryBackend(instance string, h *presence.MemoryHistory, presenceTTL time.Duration) *backend {
	dir := presence.NewMemoryDirectory()
	bus := presence.NewMemoryBus()
	return &backend{
		instances: presence.NewMemoryInstances(presenceTTL),
		dir:       dir,
		history:   h,
		relay:     bus.Relay(instance),
		disp:      presence.NewMemoryDispatcher(h, dir, bus),
		receipts:  presence.NewMemoryReceipts(),
		idem:      idempotency.NewMemory(presence.DedupeWindow, idempotency.MaxMemoryKeys),
		close:     func() {},
	}
}
