package broker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/broker"
)

// tries records what a handler was given, in order.
type tries struct {
	mu     sync.Mutex
	bodies []string
	counts map[string][]any // x-delivery-count of each try, by body
}

func (tr *tries) add(d broker.Delivery) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.bodies = append(tr.bodies, string(d.Body))
	if tr.counts == nil {
		tr.counts = map[string][]any{}
	}
	tr.counts[string(d.Body)] = append(tr.counts[string(d.Body)], d.Headers["x-delivery-count"])
}

func (tr *tries) of(body string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.counts[body])
}

func (tr *tries) snapshot() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.bodies...)
}

// TestRabbitPoisonWaitsAloneAndIsDeadLettered, on both queue types: a delivery Redis
// keeps refusing (Requeue) waits out each pause alone — the deliveries behind it are
// handled meanwhile — and is dead-lettered after limit+1 tries; a delivery that only
// fails with everyone's hand-off (Retry) is held and retried as often as it takes and
// never counted, not even by a quorum queue.
func TestRabbitPoisonWaitsAloneAndIsDeadLettered(t *testing.T) {
	for _, qt := range []string{broker.QueueClassic, broker.QueueQuorum} {
		t.Run(qt, func(t *testing.T) {
			const limit = 2
			tp := apptest.NewTopology(t, "k")
			dl := apptest.NewDeadLetter(t)
			var tr tries
			outageTries := 0
			r := broker.NewRabbit(broker.RabbitConfig{
				URL: apptest.AMQPURL(), Exchange: tp.Exchange, Bindings: []broker.Binding{{Queue: tp.Queues[0], Key: "k"}},
				Prefetch: 8, DeadLetterExchange: dl.Exchange, QueueType: qt, DeliveryLimit: limit,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			err := r.Start(context.Background(), func(_ context.Context, ds []broker.Delivery) []broker.Outcome {
				out := make([]broker.Outcome, len(ds))
				for i, d := range ds {
					tr.add(d)
					switch string(d.Body) {
					case "poison":
						out[i] = broker.Requeue
					case "outage":
						if outageTries++; outageTries <= limit+1 {
							out[i] = broker.Retry
						}
					}
				}
				return out
			})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			apptest.Eventually(t, 10*time.Second, "connected", r.Ready)

			tp.Publish(t, "k", []byte("poison"), nil)
			apptest.Eventually(t, 10*time.Second, "the poison's first try", func() bool { return tr.of("poison") == 1 })
			var good [][]byte
			for i := range 40 {
				good = append(good, fmt.Appendf(nil, "good-%d", i))
			}
			tp.PublishMany(t, "k", append(good, []byte("outage")), nil)
			apptest.Eventually(t, 20*time.Second, "the poison dead-lettered", func() bool { return r.DeadLettered() == 1 })
			apptest.Eventually(t, 20*time.Second, "the outage handed off", func() bool { return tr.of("outage") == limit+2 })

			got := tr.snapshot()
			second := -1
			for i, b := range got[1:] {
				if b == "poison" {
					second = i + 1
					break
				}
			}
			if n := strings.Count(strings.Join(got[:second], " "), "good-"); n != len(good) {
				t.Errorf("%d of %d good deliveries handled before the poison's second try: its pause held up the queue", n, len(good))
			}
			if n := tr.of("poison"); n != limit+1 {
				t.Errorf("poison tried %d times, want %d (limit %d)", n, limit+1, limit)
			}
			var msgs []string
			apptest.Eventually(t, 10*time.Second, "the poison in the dead-letter queue", func() bool {
				for _, d := range dl.Messages(t) {
					msgs = append(msgs, string(d.Body)+"/"+apptest.Reason(d))
				}
				return len(msgs) > 0
			})
			want := map[string]string{broker.QueueClassic: "rejected", broker.QueueQuorum: "delivery_limit"}[qt]
			if fmt.Sprint(msgs) != "[poison/"+want+"]" {
				t.Errorf("dead-lettered %v, want [poison/%s]", msgs, want)
			}
			tr.mu.Lock()
			outageCounts := fmt.Sprint(tr.counts["outage"])
			tr.mu.Unlock()
			if outageCounts != fmt.Sprint(make([]any, limit+2)) {
				t.Errorf("x-delivery-count of the outage's tries: %s, want none: it was held here, never returned to the queue", outageCounts)
			}
			r.StopConsuming(context.Background())
			r.Close()
			if n := apptest.QueueReady(t, tp.Queues[0]); n != 0 {
				t.Errorf("queue holds %d after the stop, want 0", n)
			}
		})
	}
}
