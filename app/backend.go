package app

import (
	"context"
	"log/slog"
	"time"

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
	// refresh rewrites this instance's directory entries with each beat and reports
	// whether they had lapsed; nil in memory.
	refresh func(context.Context) (lapsed bool, err error)
	ping    func(context.Context) error // Redis answers; nil in memory
	close   func()
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
	return &backend{
		instances: presence.NewRedisInstances(rdb, ro),
		dir:       dir,
		history:   presence.NewRedisHistory(rdb, ro),
		relay:     presence.NewRedisRelay(rdb, ro, log),
		disp:      presence.NewRedisDispatcher(rdb, ro),
		refresh:   dir.RefreshLapsed,
		ping:      func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		close:     func() { rdb.Close() },
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
		close:     func() {},
	}
}
