package broker

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consume starts one consumer per queue, each on a channel of its own: a channel's
// delivery tags are then the queue's alone, so one ack with multiple set can settle
// many of its deliveries (acks.go), and one queue's acks never wait behind another's.
func (r *Rabbit) consume(ctx context.Context, s *session, handle Handler) error {
	if r.isStopping() { // draining: publish, but take no new deliveries
		return nil
	}
	for i, q := range Queues(r.cfg.Bindings) {
		ch, err := s.conn.Channel()
		if err != nil {
			return fmt.Errorf("open consumer channel for %s: %w", q, err)
		}
		if err := ch.Qos(r.cfg.Prefetch, 0, false); err != nil {
			return fmt.Errorf("set prefetch: %w", err)
		}
		c := consumer{ch: ch, tag: fmt.Sprintf("pushbridge-%d", i), cancels: ch.NotifyCancel(make(chan string, 1))}
		ds, err := ch.Consume(q, c.tag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s: %w", q, err)
		}
		s.consumers = append(s.consumers, c)
		// Checked with the Add as one step, so no Add can race StopConsuming's Wait.
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return nil
		}
		r.inflight.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.inflight.Done()
			r.consumeQueue(ctx, ch, q, ds, handle)
		}()
	}
	return nil
}

// consumeQueue hands the deliveries of queue q to handle in batches and settles them,
// until ds closes, the channel does or a stop begins. route spreads them over the
// queue's lanes by their order key; each lane batches its own and hands them to handle
// in queue order, and the lanes run at once: up to RabbitConfig.Lanes batches of the
// queue are in flight. acks settles for all of them.
func (r *Rabbit) consumeQueue(ctx context.Context, ch *amqp.Channel, q string, ds <-chan amqp.Delivery, handle Handler) {
	done := make(chan struct{})
	defer close(done)
	bufs := r.route(q, ds, done)
	a := newAcks(r, ch)
	// What a lane's handler acked after a delivery another lane never handled (the stop
	// came first) is acked now, before the drain goes on.
	defer a.flush()
	var wg sync.WaitGroup
	for _, buf := range bufs[1:] {
		wg.Go(func() { r.lane(ctx, ch, q, buf, a, handle) })
	}
	r.lane(ctx, ch, q, bufs[0], a, handle)
	wg.Wait()
}

// lane hands the deliveries of buf to handle in batches and settles them through a,
// until buf closes, the channel does or a stop begins. A delivery to try again waits
// out its pause in w while the lane goes on with the rest of its deliveries, and is
// then handled again in this lane; it holds one of the prefetch's places meanwhile,
// so at most the prefetch wait at once.
func (r *Rabbit) lane(ctx context.Context, ch *amqp.Channel, q string, buf <-chan delivery, a *acks, handle Handler) {
	w := newWaiting()
	// What still waits goes back to the queue at once, for another consumer; on a
	// closed channel the nack fails and the broker requeues it anyway.
	defer w.release(a)
	for {
		// A stop ends the loop after the batch in hand, whichever session this is:
		// one that connected while the stop began may never have had its consumers
		// cancelled. What is still buffered stays unacknowledged and the broker hands
		// it to another consumer.
		var batch []delivery
		select {
		case <-r.stop:
			return
		case d, ok := <-buf:
			if !ok {
				return
			}
			batch = take(buf, []delivery{d})
		case <-w.timer.C:
			batch = w.due(a, time.Now())
			if len(batch) == 0 {
				continue
			}
			batch = take(buf, batch)
		}
		if ch.IsClosed() {
			// The broker redelivers them: handled now, they would be dispatched
			// twice, since none could be acked.
			return
		}
		r.settle(a, q, batch, handle(context.WithoutCancel(ctx), deliveries(q, batch)), w)
	}
}

// delivery is one delivery on its way through a lane: as the broker sent it, and what
// RabbitConfig.OrderKey made of it.
type delivery struct {
	amqp.Delivery
	decoded any
}

// route forwards ds into one buffered channel per lane as fast as the library hands
// them over, each to the lane of its order key (RabbitConfig.OrderKey), in the order
// of ds. The library's channel is unbuffered: a receive that must not wait finds a
// delivery there only while the library's goroutine is parked on the send, which it is
// not right after the previous one. A lane's channel fills while the lane handles a
// batch, so its next batch is what has arrived meanwhile. Each holds up to the
// prefetch (at most laneBuffer), so one busy lane seldom keeps the others waiting for
// deliveries. route ends when ds closes, closing the lanes' channels, or when done does.
func (r *Rabbit) route(q string, ds <-chan amqp.Delivery, done <-chan struct{}) []chan delivery {
	n := 1
	if r.cfg.OrderKey != nil {
		n = max(r.cfg.Lanes, 1)
	}
	bufs := make([]chan delivery, n)
	for i := range bufs {
		bufs[i] = make(chan delivery, min(max(r.cfg.Prefetch, 1), laneBuffer))
	}
	seed := maphash.MakeSeed()
	go func() {
		defer func() {
			for _, b := range bufs {
				close(b)
			}
		}()
		for d := range ds {
			x, lane := delivery{Delivery: d}, 0
			if r.cfg.OrderKey != nil {
				var key string
				// Read here even with one lane: the consumer reuses what it found.
				key, x.decoded = r.cfg.OrderKey(toDelivery(q, d, nil))
				if n > 1 {
					lane = int(maphash.String(seed, key) % uint64(n))
				}
			}
			select {
			case bufs[lane] <- x:
			case <-done:
				return
			}
		}
	}()
	return bufs
}

// laneBuffer bounds a lane's buffer (a delivery is a few hundred bytes): a prefetch
// above it can make route wait for a lane that is behind.
const laneBuffer = 1024

// take returns batch and what buf already holds after it, up to maxBatch, without
// waiting for more.
func take(buf <-chan delivery, batch []delivery) []delivery {
	for len(batch) < maxBatch {
		select {
		case d, ok := <-buf:
			if !ok {
				return batch
			}
			batch = append(batch, d)
		default:
			return batch
		}
	}
	return batch
}

func deliveries(queue string, batch []delivery) []Delivery {
	out := make([]Delivery, len(batch))
	for i, d := range batch {
		out[i] = toDelivery(queue, d.Delivery, d.decoded)
	}
	return out
}

func toDelivery(queue string, d amqp.Delivery, decoded any) Delivery {
	return Delivery{
		Queue: queue, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers,
		MessageID: d.MessageId, CorrelationID: d.CorrelationId, Redelivered: d.Redelivered, Decoded: decoded,
	}
}

// settle settles each delivery of a batch at once and puts the ones to try again in
// w, each to wait out its own pause. The acks go to a together, which sends them as
// one ack once the deliveries before them are settled (acks.go); a reject is sent on
// its own; a waiting delivery is held in a, so no ack covers it.
func (r *Rabbit) settle(a *acks, q string, batch []delivery, outcomes []Outcome, w *waiting) {
	now := time.Now()
	tracked := r.cfg.QueueType != QueueQuorum && !r.fails.empty()
	acked := make([]uint64, 0, len(batch))
	for i, d := range batch {
		switch outcomes[i] {
		case Ack, Reject:
			if tracked {
				r.fails.forget(r.fails.key(q, d.MessageId, d.Body))
			}
			if outcomes[i] == Ack {
				acked = append(acked, d.DeliveryTag)
			} else {
				// To the dead-letter exchange, where one is set.
				a.settle(d.DeliveryTag, func() error { return d.Reject(false) })
			}
		case Requeue:
			if r.givenUp(a, q, d.Delivery) {
				continue
			}
			a.hold(d.DeliveryTag)
			w.add(d, false, now)
		case Retry:
			a.hold(d.DeliveryTag)
			w.add(d, true, now)
		}
	}
	a.ack(acked)
}

// givenUp settles d, whose hand-off failed because of itself, as a poison message
// when this was its last try, and says whether it did. A quorum queue's d goes back
// with a nack, which RabbitMQ turns into a dead-letter past x-delivery-limit; a
// classic queue's is rejected once it failed more than the limit.
func (r *Rabbit) givenUp(a *acks, q string, d amqp.Delivery) bool {
	var tries int64
	if r.cfg.QueueType == QueueQuorum {
		tries = deliveryCount(d.Headers) + 1
		if tries <= int64(r.cfg.DeliveryLimit) {
			return false
		}
		a.settle(d.DeliveryTag, func() error { return d.Nack(false, true) })
	} else {
		k := r.fails.key(q, d.MessageId, d.Body)
		tries = int64(r.fails.fail(k))
		if tries <= int64(r.cfg.DeliveryLimit) {
			return false
		}
		r.fails.forget(k)
		a.settle(d.DeliveryTag, func() error { return d.Reject(false) })
	}
	r.deadLettered.Add(1)
	to := r.cfg.DeadLetterExchange
	if to == "" {
		to = "(none: dropped)"
	}
	r.log.Warn("poison message given up: its hand-off failed on every try", "queue", q, "routingKey", d.RoutingKey,
		"messageId", d.MessageId, "bytes", len(d.Body), "tries", tries, "deadLetterExchange", to)
	return true
}

func (r *Rabbit) settled(err error) {
	if err != nil {
		// The channel is gone; the broker redelivers what we did not settle.
		r.log.Debug("settle delivery", "err", err)
	}
}
