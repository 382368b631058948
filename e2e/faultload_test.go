package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// The load of a fault test.
const (
	loadRate = 500 // messages per second, as the fault runs of issues 11 and 12
	// loadTick spreads the rate over the second instead of bursting once a second.
	loadTick = 10 * time.Millisecond
	// loadBroadcastEvery makes one message in so many a broadcast, so each client
	// also gets messages that are not its own (a broadcast moving a cursor past a
	// targeted message it never got is one of the ways to lose it).
	loadBroadcastEvery = 25
	// loadConfirmTimeout bounds the wait for the broker's confirm of one message; the
	// publisher's link to RabbitMQ is never cut, only the instances' are.
	loadConfirmTimeout = time.Minute
)

// loadPublisher publishes to a topology at loadRate as a backend would, with or
// without AMQP message ids, each body a loadBody, and waits for every confirm.
type loadPublisher struct {
	tp      *apptest.Topology
	key     string
	ch      *amqp.Channel
	withIDs bool
	run     string // in message ids, so no two runs share one

	mu       sync.Mutex
	users    []string
	next     map[string]int   // per target, the next seq
	times    map[msgKey]int64 // when each message was published (unix ms)
	sent     int
	targeted int // messages to users so far: the round robin over users
	err      error
	pending  chan *amqp.DeferredConfirmation
	done     chan struct{} // closed when the confirms are all in
	cancel   context.CancelFunc
}

// startLoad publishes on key to users (more may be added) until stop.
func startLoad(t *testing.T, tp *apptest.Topology, key string, users []string, withIDs bool) *loadPublisher {
	t.Helper()
	ch, err := apptest.RequireRabbit(t).Channel() // a connection of its own, never cut
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &loadPublisher{tp: tp, key: key, ch: ch, withIDs: withIDs, run: apptest.Unique("load"),
		users: append([]string(nil), users...), next: map[string]int{}, times: map[msgKey]int64{},
		pending: make(chan *amqp.DeferredConfirmation, 4*loadRate), done: make(chan struct{}), cancel: cancel}
	go p.confirms()
	go p.loop(ctx)
	t.Cleanup(func() { cancel(); ch.Close() })
	return p
}

func (p *loadPublisher) loop(ctx context.Context) {
	defer close(p.pending)
	tick := time.NewTicker(loadTick)
	defer tick.Stop()
	perTick := loadRate * int(loadTick) / int(time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range perTick {
			if err := p.publishOne(); err != nil {
				p.fail(err)
				return
			}
		}
	}
}

func (p *loadPublisher) publishOne() error {
	p.mu.Lock()
	b := loadBody{T: time.Now().UnixMilli()}
	if p.sent%loadBroadcastEvery == loadBroadcastEvery-1 {
		b.To = everyone
	} else {
		b.User = p.users[p.targeted%len(p.users)]
		p.targeted++
	}
	b.Seq = p.next[b.target()]
	p.next[b.target()]++
	p.times[msgKey{b.target(), b.Seq}] = b.T
	p.sent++
	n := p.sent
	p.mu.Unlock()
	body, _ := json.Marshal(b)
	return p.send(body, n)
}

func (p *loadPublisher) send(body []byte, n int) error {
	msg := amqp.Publishing{Body: body, ContentType: "application/json"}
	if p.withIDs {
		msg.MessageId = fmt.Sprintf("%s-%d", p.run, n)
	}
	dc, err := p.ch.PublishWithDeferredConfirm(p.tp.Exchange, p.key, false, false, msg)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.pending <- dc
	return nil
}

// burst publishes n messages at once, on top of the steady rate: a backlog the
// instances consume as fast as they can, so each has deliveries in flight.
func (p *loadPublisher) burst(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := p.publishOne(); err != nil {
			t.Fatalf("publisher: %v", err)
		}
	}
}

// confirms waits for each confirm in turn; a nack or a missing one fails the run.
func (p *loadPublisher) confirms() {
	defer close(p.done)
	for dc := range p.pending {
		ctx, cancel := context.WithTimeout(context.Background(), loadConfirmTimeout)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if !ok || err != nil {
			p.fail(fmt.Errorf("publish not confirmed: ok=%v err=%v", ok, err))
		}
	}
}

func (p *loadPublisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// addUser makes the publisher target user too, from now on.
func (p *loadPublisher) addUser(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users = append(p.users, user)
}

// broadcasts is the seq the next broadcast will carry.
func (p *loadPublisher) broadcasts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next[everyone]
}

// count is how many messages went out so far.
func (p *loadPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// await waits until n more messages have been published: the load's own clock, so
// that a phase of a run is so many messages long, however slow the machine.
func (p *loadPublisher) await(t *testing.T, n int) {
	t.Helper()
	target := p.count() + n
	apptest.Eventually(t, time.Duration(n/loadRate+30)*time.Second, fmt.Sprintf("%d more messages published", n), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.err != nil {
			t.Fatalf("publisher: %v", p.err)
		}
		return p.sent >= target
	})
}

// published is what a run published: how many messages each target got (everyone:
// the broadcasts) and when each went out.
type published struct {
	n     map[string]int
	times map[msgKey]int64
}

// stop ends the load, waits for every confirm and returns what was published.
func (p *loadPublisher) stop(t *testing.T) published {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(loadConfirmTimeout):
		t.Fatalf("publisher: confirms still missing after %s", loadConfirmTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("publisher: %v", p.err)
	}
	return published{n: maps.Clone(p.next), times: maps.Clone(p.times)}
}

// fence broadcasts a last message after stop: once a client has it, whatever was on
// its way to that client before has arrived.
func (p *loadPublisher) fence(t *testing.T) {
	t.Helper()
	body, _ := json.Marshal(loadBody{To: everyone, Seq: -1, Fence: true, T: time.Now().UnixMilli()})
	pub := newPublisher(t, p.tp)
	pub.publish(t, p.key, [][]byte{body})
}
