package app

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// newMetrics exposes the counters the parts already keep; nothing is counted twice.
func newMetrics(hub *presence.Hub, r *Consumer, b broker.Broker, be *backend, gate *connGate, dev bool, more ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(more...)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_connections", Help: "Client connections held by this instance."},
			func() float64 { return float64(hub.Count()) }),
		byTransport(hub, "ws"), byTransport(hub, "sse"), byTransport(hub, "poll"),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_tcp_connections", Help: "TCP connections open to this instance, counted against BRIDGE_MAX_CONNS: streams, requests, idle keep-alives and connections yet to send a request."},
			func() float64 { return float64(gate.count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_tcp_connections_evicted_total", Help: "Connections closed at BRIDGE_MAX_CONNS to make room for a new one, because they waited longest for their client (no request yet, idle, or a body not arrived)."},
			func() float64 { return float64(gate.evicted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_tcp_connections_refused_total", Help: "Connections refused with 503 at BRIDGE_MAX_CONNS because every connection held was busy or a live stream."},
			func() float64 { return float64(gate.refused.Load()) }),
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_requeued_total", Help: "Broker deliveries whose hand-off failed, tried again after a pause."},
			func() float64 { return float64(r.Requeued.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_refused_total", Help: "Failed hand-offs Redis refused for the message itself; they count toward BRIDGE_DELIVERY_LIMIT."},
			func() float64 { return float64(r.Refused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_dead_lettered_total", Help: "Poison deliveries given up after BRIDGE_DELIVERY_LIMIT failed tries: dead-lettered (dropped without a dead-letter exchange)."},
			func() float64 { return float64(b.DeadLettered()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_duplicate_total", Help: "Redeliveries of an already dispatched message (same queue, AMQP message id and body; without an id, a redelivery with the same routing key and body), acked without a second dispatch."},
			func() float64 { return float64(r.Duplicates.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_relay_resyncs_total", Help: "Times every connection was caught up from the history: the relay subscribed again, or this instance was out of presence."},
			func() float64 { return float64(hub.Stats.Resyncs.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_replays_total", Help: "Connections that came back with a cursor and had their replay queued."},
			func() float64 { return float64(hub.Stats.Replays.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_messages_caught_up_total", Help: "Messages a connection got from the history after a gap in the relay, or after its replay stopped at its bounds (what follows as its queue drains)."},
			func() float64 { return float64(hub.Stats.CaughtUp.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_presence_heals_total", Help: "Connections a heartbeat found behind their streams' tops (a lost publish) and caught up, or sent away when their stream was lost."},
			func() float64 { return float64(hub.Stats.Healed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_catch_up_drops_total", Help: "Connections told to reconnect because a gap could not be filled from the history."},
			func() float64 { return float64(hub.Stats.CatchUpDrops.Load()) }),
		relayDropped(be, "malformed", 0), relayDropped(be, "foreign", 1),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_relay_publish_failed_total", Help: "Relay payloads a dispatch could not publish (the messages are in the history: receivers catch up at their next message or heartbeat)."},
			func() float64 {
				if be.publishFailed == nil {
					return 0
				}
				return float64(be.publishFailed())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_dev_mode", Help: "1 when this instance runs in dev mode: clients are not authenticated."},
			func() float64 {
				if dev {
					return 1
				}
				return 0
			}),
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

// relayDropped is the counter of relay payloads dropped for one reason (which: 0
// malformed, 1 foreign); always 0 in memory.
func relayDropped(be *backend, reason string, which int) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pushbridge_relay_dropped_total", Help: "Relay payloads dropped, never delivered: malformed (does not parse) or foreign (names another deployment's namespace).",
		ConstLabels: prometheus.Labels{"reason": reason},
	}, func() float64 {
		if be.relayDropped == nil {
			return 0
		}
		m, f := be.relayDropped()
		return float64([2]int64{m, f}[which])
	})
}

// byTransport is the gauge of the connections held on one transport.
func byTransport(hub *presence.Hub, transport string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushbridge_transport_connections", Help: "Client connections held by this instance, by transport.",
		ConstLabels: prometheus.Labels{"transport": transport},
	}, func() float64 { return float64(hub.CountOf(transport)) })
}

// relayLag is pushbridge_relay_lag_seconds: how long after its record each message
// reached this instance's hub through the relay.
type relayLag struct{ h prometheus.Histogram }

func newRelayLag() relayLag {
	return relayLag{prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pushbridge_relay_lag_seconds",
		Help: "Time from a message's record (by the dispatching instance's clock, to the millisecond) to the relay handing it to this instance's hub: the rest of the dispatch, the publish and the pub/sub hop, or the in-process hand-off.",
		// 1 ms to ~4 s: the record time is kept in milliseconds.
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 13),
	})}
}

func (l relayLag) observe(ms []*presence.Message) {
	now := time.Now().UnixMilli()
	for _, m := range ms {
		if m.Time > 0 {
			l.h.Observe(float64(max(now-m.Time, 0)) / 1000)
		}
	}
}
