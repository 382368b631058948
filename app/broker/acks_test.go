package broker

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
)

// fakeChannel settles as RabbitMQ does on one channel: an ack with multiple set
// settles every outstanding tag up to its own; a tag settled twice (or never
// delivered) would close the channel. It also knows which tags the handlers acked,
// and records as a violation any ack that settles a tag they did not.
type fakeChannel struct {
	mu          sync.Mutex
	outstanding map[uint64]bool // delivered, not settled
	mayAck      map[uint64]bool // the handler acked it
	frames      []string
	violations  []string
}

func newFakeChannel(n uint64) *fakeChannel {
	c := &fakeChannel{outstanding: map[uint64]bool{}, mayAck: map[uint64]bool{}}
	for t := uint64(1); t <= n; t++ {
		c.outstanding[t] = true
	}
	return c
}

func (c *fakeChannel) Ack(tag uint64, multiple bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, fmt.Sprintf("ack %d %v", tag, multiple))
	if !c.outstanding[tag] {
		c.violations = append(c.violations, fmt.Sprintf("ack of %d, which is not outstanding", tag))
	}
	for t := range c.outstanding {
		if t == tag || (multiple && t < tag) {
			if !c.mayAck[t] {
				c.violations = append(c.violations, fmt.Sprintf("ack %d (multiple %v) settles %d, which no handler acked", tag, multiple, t))
			}
			delete(c.outstanding, t)
		}
	}
	return nil
}

// handed says the handler acked tag.
func (c *fakeChannel) handed(tag uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mayAck[tag] = true
}

// nack settles tag on its own (a reject or a nack).
func (c *fakeChannel) nack(tag uint64) func() error {
	return func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.frames = append(c.frames, fmt.Sprintf("nack %d", tag))
		if !c.outstanding[tag] {
			c.violations = append(c.violations, fmt.Sprintf("nack of %d, which is not outstanding", tag))
		}
		delete(c.outstanding, tag)
		return nil
	}
}

func (c *fakeChannel) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.frames
	c.frames = nil
	return f
}

func quietRabbit() *Rabbit {
	return &Rabbit{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestAcksWatermark(t *testing.T) {
	c := newFakeChannel(20)
	a := newAcks(quietRabbit(), c)
	ack := func(tags ...uint64) {
		for _, tg := range tags {
			c.handed(tg)
		}
		a.ack(tags)
	}
	step := func(what string, want ...string) {
		t.Helper()
		if got := c.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: frames %q, want %q", what, got, want)
		}
	}
	ack(2, 3)
	step("2 and 3 acked while 1 is in flight in another lane")
	ack(1)
	step("1 acked: one ack covers the run", "ack 3 true")
	a.hold(5)
	ack(6)
	step("6 acked while 5 waits: on its own", "ack 6 false")
	ack(4)
	step("4 acked: the run stops below the waiting 5", "ack 4 true")
	a.settle(5, c.nack(5))
	step("5 nacked: the run passes it and 6, with nothing more to ack", "nack 5")
	ack(8)
	step("8 acked while 7 is in flight")
	a.hold(7)
	step("7 starts to wait: 8 goes out on its own", "ack 8 false")
	ack(7)
	step("7's retry went through", "ack 7 true")
	ack(10)
	a.flush()
	step("the consumer ends while 9 is in flight: 10 goes out on its own", "ack 10 false")
	if len(c.violations) > 0 {
		t.Error(c.violations)
	}
}

// TestAcksLanesAtOnce: lanes settle their own deliveries at once, in random batches,
// with random outcomes, some waiting out a pause first; no ack ever settles a delivery
// its handler did not ack, every delivery ends settled once, and the acks go out in
// fewer frames than deliveries.
func TestAcksLanesAtOnce(t *testing.T) {
	const n, lanes = 4000, 4
	c := newFakeChannel(n)
	a := newAcks(quietRabbit(), c)
	var wg sync.WaitGroup
	for l := range lanes {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(l), 1))
			var mine, waiting []uint64
			for tg := uint64(l + 1); tg <= n; tg += lanes {
				mine = append(mine, tg)
			}
			for len(mine) > 0 || len(waiting) > 0 {
				var batch []uint64
				if len(waiting) > 0 && rnd.IntN(4) == 0 {
					batch, waiting = waiting, nil
				}
				k := min(len(mine), 1+rnd.IntN(12))
				batch, mine = append(batch, mine[:k]...), mine[k:]
				var acked []uint64
				for _, tg := range batch {
					switch r := rnd.IntN(100); {
					case r == 0:
						a.settle(tg, c.nack(tg))
					case r == 1:
						a.hold(tg)
						waiting = append(waiting, tg)
					default:
						c.handed(tg)
						acked = append(acked, tg)
					}
				}
				a.ack(acked)
			}
		})
	}
	wg.Wait()
	a.flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.violations) > 0 {
		t.Fatalf("%d violations, first: %v", len(c.violations), c.violations[0])
	}
	if len(c.outstanding) > 0 {
		t.Errorf("%d deliveries never settled", len(c.outstanding))
	}
	if len(c.frames) >= n {
		t.Errorf("%d frames for %d deliveries: the acks were not gathered", len(c.frames), n)
	}
	t.Logf("%d frames for %d deliveries", len(c.frames), n)
}
