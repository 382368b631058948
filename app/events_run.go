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
	cancel context.CancelFunc
}

// newEvents picks where events go: RabbitMQ's events exchange when AMQP_URL and
// BRIDGE_EVENTS_EXCHANGE are set, the log without AMQP_URL (memory mode), nowhere
// otherwise (nil Events). The goroutine outlives ctx (a drain still emits events); flush or stop
// end it.
func newEvents(ctx context.Context, cfg *Config, b broker.Broker, log *slog.Logger) (presence.Events, *eventsRun) {
	var publish publishFunc
	switch r, ok := b.(*broker.Rabbit); {
	case cfg.AMQPURL == "":
		publish = logPublisher(log)
	case cfg.EventsExchange != "" && ok:
		publish = r.PublishEvents
	default:
		return nil, nil
	}
	o := newOutbox(cfg.InstanceID, publish, log)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go o.run(rctx)
	return o, &eventsRun{o: o, cancel: cancel}
}

func (r *eventsRun) collectors() []prometheus.Collector {
	if r == nil {
		return nil
	}
	return r.o.collectors()
}

// flush stops the goroutine and publishes what is pending until ctx ends.
func (r *eventsRun) flush(ctx context.Context) {
	if r == nil {
		return
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
