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
// never counted, not even by a quorum queue. With one lane and with four (the poison,
// the outage and the good ones each a key of their own).
func TestRabbitPoisonWaitsAloneAndIsDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		qt    string
		lanes int
	}{{broker.QueueClassic, 1}, {broker.QueueQuorum, 1}, {broker.QueueClassic, 4}, {broker.QueueQuorum, 4}} {
		qt := tc.qt
		t.Run(fmt.Sprintf("%s/lanes=%d", qt, tc.lanes), func(t *testing.T) {
			const limit = 2
			tp := apptest.NewTopology(t, "k")
			dl := apptest.NewDeadLetter(t)
			var tr tries
			outageTries := 0
			r := broker.NewRabbit(broker.RabbitConfig{
				URL: apptest.AMQPURL(), Exchange: tp.Exchange, Bindings: []broker.Binding{{Queue: tp.Queues[0], Key: "k"}},
				Prefetch: 8, DeadLetterExchange: dl.Exchange, QueueType: qt, DeliveryLimit: limit,
				Lanes: tc.lanes, OrderKey: func(d broker.Delivery) (string, any) { return string(d.Body), nil },
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

// TestRabbitBatchAckLeavesOtherQueuesAlone: a batch handed off whole is acked with one
// multiple ack, which must settle that queue's batch and nothing else. Queue b's
// handler holds its delivery while queue a's 200 go through in batches; then the
// connection is cut. The delivery b held was never acked, so the broker hands it out
// again after the reconnect (redelivered); had an ack of a's covered it, it would be
// gone. Every one of a's is handled once and nothing is left in either queue.
func TestRabbitBatchAckLeavesOtherQueuesAlone(t *testing.T) {
	tp := apptest.NewTopology(t, "a", "b")
	h := newHeldRig(t)
	var bigA int // batches of a's with more than one delivery; under h's lock
	r := broker.NewRabbit(broker.RabbitConfig{
		URL: h.URL, Exchange: tp.Exchange,
		Bindings: []broker.Binding{{Queue: tp.Queues[0], Key: "a"}, {Queue: tp.Queues[1], Key: "b"}},
		Prefetch: 64, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	err := r.Start(context.Background(), func(_ context.Context, ds []broker.Delivery) []broker.Outcome {
		h.record(ds, func() {
			if len(ds) > 1 && ds[0].Queue == tp.Queues[0] {
				bigA++
			}
		})
		h.hold(ds[0].Queue == tp.Queues[1])    // the first batch of b waits until the connection is cut
		return make([]broker.Outcome, len(ds)) // all Ack
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	apptest.Eventually(t, 10*time.Second, "connected", r.Ready)

	tp.Publish(t, "b", []byte("b-held"), nil)
	h.awaitHeld(t, "queue b's delivery")
	var as [][]byte
	for i := range 200 {
		as = append(as, fmt.Appendf(nil, "a-%d", i))
	}
	tp.PublishMany(t, "a", as, nil)
	apptest.Eventually(t, 20*time.Second, "a's 200 handled", func() bool { return len(h.tries("a-199")) > 0 })
	// a's batches are acked before their handler is called again; one more a after
	// them makes sure the last batch's ack went out before the cut.
	tp.Publish(t, "a", []byte("a-last"), nil)
	apptest.Eventually(t, 10*time.Second, "a-last handled", func() bool { return len(h.tries("a-last")) > 0 })

	h.Proxy.Down()
	h.Release()
	apptest.Eventually(t, 10*time.Second, "disconnected", func() bool { return !r.Ready() })
	h.Proxy.Up(t)
	apptest.Eventually(t, 20*time.Second, "b-held handed out again", func() bool { return len(h.tries("b-held")) == 2 })
	if got := h.tries("b-held"); !got[1] {
		t.Errorf("b-held's second try not marked redelivered: %v", got)
	}
	r.StopConsuming(context.Background())
	r.Close()

	h.locked(func(handled map[string][]bool) {
		if bigA == 0 {
			t.Error("every batch of a's held one delivery: the multiple ack was never tried")
		}
		for _, b := range as {
			if got := handled[string(b)]; len(got) != 1 {
				t.Errorf("%s handled %d times (redelivered: %v), want once", b, len(got), got)
			}
		}
	})
	for _, q := range tp.Queues {
		if n := apptest.QueueReady(t, q); n != 0 {
			t.Errorf("queue %s holds %d after the stop, want 0", q, n)
		}
	}
}
