package app

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// eventsRun is the outbox with its publishing goroutine, as serve runs it. A nil one
// (events off) does nothing.
type eventsRun struct {
	o      *outbox
	trans  presence.Transitions // nil: no user.online / user.offline
	cancel context.CancelFunc
}

// newEvents picks where events go: RabbitMQ's events exchange when AMQP_URL and
// BRIDGE_EVENTS_EXCHANGE are set, the log without AMQP_URL (memory mode), nowhere
// otherwise (nil Events). The goroutine outlives ctx (a drain still emits events); flush or stop
// end it.
//
// user.online and user.offline are decided in memory for a single instance. Across
// instances (REDIS_URL) they need the per-user presence of the new Redis data plane,
// and are not sent yet (docs/events.md says how they will be).
func newEvents(ctx context.Context, cfg *Config, b broker.Broker, log *slog.Logger) (presence.Events, presence.Transitions, *eventsRun) {
	var publish publishFunc
	switch r, ok := b.(*broker.Rabbit); {
	case cfg.AMQPURL == "":
		publish = logPublisher(log)
	case cfg.EventsExchange != "" && ok:
		publish = r.PublishEvents
	default:
		return nil, nil, nil
	}
	o := newOutbox(cfg.InstanceID, publish, log)
	run := &eventsRun{o: o}
	if cfg.RedisURL == "" {
		run.trans = presence.NewMemoryTransitions(cfg.OfflineGrace, o)
	} else {
		log.Warn("events: user.online and user.offline are not sent with REDIS_URL yet (see docs/events.md); message.undelivered and message.received are")
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run.cancel = cancel
	go o.run(rctx)
	return o, run.trans, run
}

func (r *eventsRun) collectors() []prometheus.Collector {
	if r == nil {
		return nil
	}
	return r.o.collectors()
}

// flush announces the users still online as gone (the drain closed their
// connections, and in memory mode nobody else will), stops the goroutine and
// publishes what is pending until ctx ends.
func (r *eventsRun) flush(ctx context.Context) {
	if r == nil {
		return
	}
	if r.trans != nil {
		r.trans.Close()
	}
	r.cancel()
	r.o.flush(ctx)
}

// stop ends the goroutine and waits for it; what is pending is dropped (flush first).
func (r *eventsRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.o.done
}
