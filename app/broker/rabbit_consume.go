package broker

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consume starts one consumer goroutine per queue, each on a channel of its own: a
// channel's delivery tags are then the queue's alone, so one ack with multiple set can
// settle a whole batch (settle), and one queue's acks never wait behind another's.
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
// until ds closes, the channel does or a stop begins. A delivery to try again waits
// out its pause in w while the loop goes on with the rest of the queue; it holds one
// of the prefetch's places meanwhile, so at most the prefetch wait at once.
func (r *Rabbit) consumeQueue(ctx context.Context, ch *amqp.Channel, q string, ds <-chan amqp.Delivery, handle Handler) {
	done := make(chan struct{})
	defer close(done)
	buf := r.buffer(ds, done)
	w := newWaiting()
	// What still waits goes back to the queue at once, for another consumer; on a
	// closed channel the nack fails and the broker requeues it anyway.
	defer w.release(r)
	for {
		// A stop ends the loop after the batch in hand, whichever session this is:
		// one that connected while the stop began may never have had its consumers
		// cancelled. What is still buffered stays unacknowledged and the broker hands
		// it to another consumer.
		var batch []amqp.Delivery
		select {
		case <-r.stop:
			return
		case d, ok := <-buf:
			if !ok {
				return
			}
			batch = take(buf, []amqp.Delivery{d})
		case <-w.timer.C:
			batch = w.due(r, time.Now())
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
		r.settle(ch, q, batch, handle(context.WithoutCancel(ctx), deliveries(q, batch)), w)
	}
}

// buffer forwards ds into a buffered channel as fast as the library hands them over.
// The library's channel is unbuffered: a receive that must not wait finds a delivery
// there only while the library's goroutine is parked on the send, which it is not
// right after the previous one. This one fills while a batch is being handled, so the
// next batch is what has arrived meanwhile. It ends when ds closes or done does.
func (r *Rabbit) buffer(ds <-chan amqp.Delivery, done <-chan struct{}) <-chan amqp.Delivery {
	buf := make(chan amqp.Delivery, min(max(r.cfg.Prefetch, 1), maxBatch))
	go func() {
		defer close(buf)
		for d := range ds {
			select {
			case buf <- d:
			case <-done:
				return
			}
		}
	}()
	return buf
}

// take returns batch and what buf already holds after it, up to maxBatch, without
// waiting for more.
func take(buf <-chan amqp.Delivery, batch []amqp.Delivery) []amqp.Delivery {
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

func deliveries(queue string, batch []amqp.Delivery) []Delivery {
	out := make([]Delivery, len(batch))
	for i, d := range batch {
		out[i] = Delivery{
			Queue: queue, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers,
			MessageID: d.MessageId, CorrelationID: d.CorrelationId, Redelivered: d.Redelivered,
		}
	}
	return out
}

// settle acks or rejects each delivery of a batch at once, and puts the ones to try
// again in w, each to wait out its own pause. A batch that is all acked while nothing
// waits in w is acked with one ack, multiple set, of its highest tag: the channel
// carries this queue's deliveries only, every earlier one was settled with its batch
// or waits in w, and the later ones have higher tags. Otherwise each is settled on
// its own, so a waiting delivery is never acked with the others.
func (r *Rabbit) settle(ch *amqp.Channel, q string, batch []amqp.Delivery, outcomes []Outcome, w *waiting) {
	now := time.Now()
	tracked := r.cfg.QueueType != QueueQuorum && !r.fails.empty()
	if last, ok := ackAll(batch, outcomes, w); ok {
		if tracked {
			for _, d := range batch {
				r.fails.forget(r.fails.key(q, d.MessageId, d.Body))
			}
		}
		r.settled(ch.Ack(last, true))
		return
	}
	for i, d := range batch {
		switch outcomes[i] {
		case Ack, Reject:
			if tracked {
				r.fails.forget(r.fails.key(q, d.MessageId, d.Body))
			}
			if outcomes[i] == Ack {
				r.settled(d.Ack(false))
			} else {
				r.settled(d.Reject(false)) // to the dead-letter exchange, where one is set
			}
		case Requeue:
			if r.givenUp(q, d) {
				continue
			}
			w.add(d, false, now)
		case Retry:
			w.add(d, true, now)
		}
	}
}

// ackAll says whether the whole batch can be acked with one multiple ack, and of
// which tag: every outcome is Ack, and no delivery of the queue waits in w (its tag
// may be lower than the batch's).
func ackAll(batch []amqp.Delivery, outcomes []Outcome, w *waiting) (uint64, bool) {
	if len(batch) < 2 || len(w.items) > 0 {
		return 0, false
	}
	var last uint64
	for i, d := range batch {
		if outcomes[i] != Ack {
			return 0, false
		}
		last = max(last, d.DeliveryTag)
	}
	return last, true
}

// givenUp settles d, whose hand-off failed because of itself, as a poison message
// when this was its last try, and says whether it did. A quorum queue's d goes back
// with a nack, which RabbitMQ turns into a dead-letter past x-delivery-limit; a
// classic queue's is rejected once it failed more than the limit.
func (r *Rabbit) givenUp(q string, d amqp.Delivery) bool {
	var tries int64
	if r.cfg.QueueType == QueueQuorum {
		tries = deliveryCount(d.Headers) + 1
		if tries <= int64(r.cfg.DeliveryLimit) {
			return false
		}
		r.settled(d.Nack(false, true))
	} else {
		k := r.fails.key(q, d.MessageId, d.Body)
		tries = int64(r.fails.fail(k))
		if tries <= int64(r.cfg.DeliveryLimit) {
			return false
		}
		r.fails.forget(k)
		r.settled(d.Reject(false))
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
