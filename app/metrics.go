package app

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// newMetrics exposes the counters the parts already keep; nothing is counted twice.
func newMetrics(hub *presence.Hub, r *Consumer, b broker.Broker) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_connections", Help: "Client connections held by this instance."},
			func() float64 { return float64(hub.Count()) }),
		byTransport(hub, "ws"), byTransport(hub, "sse"), byTransport(hub, "poll"),
		r.DispatchSeconds,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_messages_sent_total", Help: "Messages queued to client connections."},
			func() float64 { return float64(hub.Stats.Delivered.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_slow_client_disconnects_total", Help: "Connections closed because their send queue overflowed."},
			func() float64 { return float64(hub.Stats.SlowDisconnect.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_delivery_batches_total", Help: "Batches of broker deliveries handled, each dispatched in one round trip (deliveries / batches = mean batch size)."},
			func() float64 { return float64(r.Batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_acked_total", Help: "Broker deliveries handed off and acknowledged."},
			func() float64 { return float64(r.Consumed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_rejected_total", Help: "Broker deliveries rejected as unusable (bad body, no target)."},
			func() float64 { return float64(r.Rejected.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_requeued_total", Help: "Broker deliveries requeued because routing failed."},
			func() float64 { return float64(r.Requeued.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_duplicate_total", Help: "Redeliveries of an already dispatched message (same AMQP message id), acked without a second dispatch."},
			func() float64 { return float64(r.Duplicates.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_relay_resyncs_total", Help: "Times every connection was caught up from the history: the relay subscribed again, or this instance was out of presence."},
			func() float64 { return float64(hub.Stats.Resyncs.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_messages_caught_up_total", Help: "Messages a connection got from the history after a gap in the relay."},
			func() float64 { return float64(hub.Stats.CaughtUp.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_catch_up_drops_total", Help: "Connections told to reconnect because a gap could not be filled from the history."},
			func() float64 { return float64(hub.Stats.CatchUpDrops.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_broker_up", Help: "1 while the broker connection is up."},
			func() float64 {
				if b.Ready() {
					return 1
				}
				return 0
			}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// byTransport is the gauge of the connections held on one transport.
func byTransport(hub *presence.Hub, transport string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushbridge_transport_connections", Help: "Client connections held by this instance, by transport.",
		ConstLabels: prometheus.Labels{"transport": transport},
	}, func() float64 { return float64(hub.CountOf(transport)) })
}
