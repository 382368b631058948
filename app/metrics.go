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
func newMetrics(hub *presence.Hub, r *Router, b broker.Broker) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushbridge_connections", Help: "Client connections held by this instance."},
			func() float64 { return float64(hub.Count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_messages_sent_total", Help: "Messages queued to client connections."},
			func() float64 { return float64(hub.Stats.Delivered.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_slow_client_disconnects_total", Help: "Connections closed because their send queue overflowed."},
			func() float64 { return float64(hub.Stats.SlowDisconnect.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_acked_total", Help: "Broker deliveries handed off and acknowledged."},
			func() float64 { return float64(r.Consumed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_rejected_total", Help: "Broker deliveries rejected as unusable (bad body, no target)."},
			func() float64 { return float64(r.Rejected.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pushbridge_deliveries_requeued_total", Help: "Broker deliveries requeued because routing failed."},
			func() float64 { return float64(r.Requeued.Load()) }),
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
