package broker

import (
	"time"
)

// waiting holds one lane's deliveries while each waits out its pause before it is
// tried again, so a failing delivery never holds up the ones behind it. Only the
// lane's goroutine uses it; each waiting delivery is held in the queue's acks.
type waiting struct {
	items []waiter    // in the order they come due: every pause is the same
	timer *time.Timer // fires when items[0] is due; stopped while none waits
}

type waiter struct {
	d     delivery
	retry bool // handled again here (Retry); else nacked back to the queue (Requeue)
	at    time.Time
}

func newWaiting() *waiting {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiting{timer: t}
}

// add makes d wait requeuePause from now.
func (w *waiting) add(d delivery, retry bool, now time.Time) {
	w.items = append(w.items, waiter{d: d, retry: retry, at: now.Add(requeuePause)})
	if len(w.items) == 1 {
		w.timer.Reset(requeuePause)
	}
}

// due ends the wait of what is due at now: a delivery the handler requeued goes
// back to the queue with a nack (where a quorum queue counts it); the ones to retry
// are returned, at most maxBatch, to be handled again as one batch. The rest wait on.
func (w *waiting) due(a *acks, now time.Time) []delivery {
	var again []delivery
	n := 0
	for ; n < len(w.items) && !w.items[n].at.After(now) && len(again) < maxBatch; n++ {
		if w.items[n].retry {
			// Handled again as a redelivery: the failed try may have been dispatched
			// after all (an append whose reply timed out ran once Redis woke up), so
			// a message without an id must be checked against its content key.
			d := w.items[n].d
			d.Redelivered = true
			again = append(again, d)
		} else {
			d := w.items[n].d
			a.settle(d.DeliveryTag, func() error { return d.Nack(false, true) })
		}
	}
	clear(w.items[:n])
	w.items = w.items[n:]
	if len(w.items) > 0 {
		w.timer.Reset(max(w.items[0].at.Sub(now), 0))
	}
	return again
}

// release sends everything still waiting back to the queue, for another consumer.
func (w *waiting) release(a *acks) {
	w.timer.Stop()
	for _, it := range w.items {
		a.settle(it.d.DeliveryTag, func() error { return it.d.Nack(false, true) })
	}
	clear(w.items)
	w.items = nil
}
