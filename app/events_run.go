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
	o     *outbox
	trans presence.Transitions // nil: no user.online / user.offline
	// beat is the Redis form's part of each heartbeat (RedisTransitions.Beat); nil in memory.
	beat   func(ctx context.Context, lapsed bool) error
	cancel context.CancelFunc
}

// newEvents picks where events go: RabbitMQ's events exchange when AMQP_URL and
// BRIDGE_EVENTS_EXCHANGE are set, the log without AMQP_URL (memory mode), nowhere
// otherwise (nil Events). The goroutine outlives ctx (a drain still emits events); flush or stop
// end it.
//
// user.online and user.offline are decided in memory for a single instance, and in
// Redis across instances (REDIS_URL: be.transitions, docs/events.md).
func newEvents(ctx context.Context, cfg *Config, be *backend, b broker.Broker, log *slog.Logger) (presence.Events, presence.Transitions, *eventsRun) {
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
	if be.transitions == nil {
		run.trans = presence.NewMemoryTransitions(cfg.OfflineGrace, o)
	} else {
		rt := be.transitions(cfg.OfflineGrace, o)
		run.trans, run.beat = rt, rt.Beat
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

// transitionsBeat is what the heartbeat runs for the transitions: nil when there is
// nothing to run (events off, or memory mode).
func (r *eventsRun) transitionsBeat() func(ctx context.Context, lapsed bool) error {
	if r == nil {
		return nil
	}
	return r.beat
}

// flush announces the users still online as gone (the drain closed their
// connections, and in memory mode nobody else will; with Redis, the survivors do after
// the grace), stops the goroutine and
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
