package broker

import (
	"slices"
	"sync"
)

// acks settles one queue's deliveries for all of the queue's lanes. The queue has an
// AMQP channel of its own, whose delivery tags are 1, 2, 3… in delivery order, so one
// ack with multiple set settles every outstanding delivery up to its tag — also those
// another lane is still handling. So a lane never sends that ack itself: it records
// what its handler acked here, and one ack, multiple set, goes out whenever the
// watermark advances: the highest tag such that every tag up to it is settled. One ack
// frame per advance, however many deliveries it covers.
//
// A delivery that waits out a pause (waiting.go) holds the watermark until it is
// settled; meanwhile the acks of the deliveries after it go out one by one, each on
// its own, so it never keeps the others from being acked (and the prefetch from
// moving). A reject or nack is sent at once, on its own, and counts as settled.
//
// Every frame is sent under mu, so a multiple ack never passes a reject or nack of a
// tag below it still on its way (a tag settled twice closes the channel).
type acks struct {
	r  *Rabbit
	ch acker

	mu   sync.Mutex
	low  uint64              // every tag up to low is settled
	done map[uint64]bool     // tags above low handled: true acked but not sent yet, false settled
	held map[uint64]struct{} // tags above low waiting out a pause
}

// acker sends acks: the queue's *amqp.Channel.
type acker interface {
	Ack(tag uint64, multiple bool) error
}

func newAcks(r *Rabbit, ch acker) *acks {
	return &acks{r: r, ch: ch, done: map[uint64]bool{}, held: map[uint64]struct{}{}}
}

// ack records that tags were handed off, and sends the ack that settles them, once
// every tag before them is settled too. A tag after one that waits is acked at once,
// on its own.
func (a *acks) ack(tags []uint64) {
	if len(tags) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range tags {
		delete(a.held, t) // a retry that went through
	}
	firstHeld := a.firstHeld()
	for _, t := range tags {
		if firstHeld != 0 && t > firstHeld {
			a.r.settled(a.ch.Ack(t, false))
			a.done[t] = false
		} else {
			a.done[t] = true
		}
	}
	a.advance()
}

// hold records that tag waits out a pause. The acks recorded after it go out now, each
// on its own: the watermark stops below tag until it is settled.
func (a *acks) hold(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held[tag] = struct{}{}
	var after []uint64
	for t, pending := range a.done {
		if pending && t > tag {
			after = append(after, t)
		}
	}
	slices.Sort(after)
	for _, t := range after {
		a.r.settled(a.ch.Ack(t, false))
		a.done[t] = false
	}
}

// settle settles tag on its own with send (a reject or a nack), then moves the
// watermark past it where it can.
func (a *acks) settle(tag uint64, send func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.r.settled(send())
	delete(a.held, tag)
	a.done[tag] = false
	a.advance()
}

// flush acks, each on its own, what the handlers acked but the watermark never
// reached: the consumer is ending, and a tag before them will not be handled here.
func (a *acks) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var pending []uint64
	for t, p := range a.done {
		if p {
			pending = append(pending, t)
		}
	}
	slices.Sort(pending)
	for _, t := range pending {
		a.r.settled(a.ch.Ack(t, false))
		a.done[t] = false
	}
}

// advance moves the watermark over the settled tags after it and sends one ack,
// multiple set, of the highest acked one among them. That ack settles only acked
// tags: every tag up to it is settled or acked, and none waits.
func (a *acks) advance() {
	var last uint64
	for {
		pending, ok := a.done[a.low+1]
		if !ok {
			break
		}
		a.low++
		delete(a.done, a.low)
		if pending {
			last = a.low
		}
	}
	if last != 0 {
		a.r.settled(a.ch.Ack(last, true))
	}
}

// firstHeld is the lowest tag that waits, 0 when none does.
func (a *acks) firstHeld() uint64 {
	var first uint64
	for t := range a.held {
		if first == 0 || t < first {
			first = t
		}
	}
	return first
}
