package broker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/broker"
)

// heldRig is what the "a held delivery is never acked by another's ack" tests share:
// the AMQP URL through a proxy the test cuts, a record of every delivery the handler
// was given, and one batch the handler holds until the test releases it.
type heldRig struct {
	URL     string         // the broker, through Proxy
	Proxy   *apptest.Proxy // cut it to end the connection
	mu      sync.Mutex
	handled map[string][]bool // body: Redelivered of each try
	holding chan struct{}     // closed once the held batch is in the handler
	release chan struct{}     // closed by Release: the held batch returns
	once    sync.Once
}

func newHeldRig(t *testing.T) *heldRig {
	t.Helper()
	p, u := apptest.AMQPProxy(t)
	return &heldRig{URL: u, Proxy: p, handled: map[string][]bool{}, holding: make(chan struct{}), release: make(chan struct{})}
}

// record notes each delivery of ds; also, if not nil, runs under the same lock.
func (h *heldRig) record(ds []broker.Delivery, also func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range ds {
		h.handled[string(d.Body)] = append(h.handled[string(d.Body)], d.Redelivered)
	}
	if also != nil {
		also()
	}
}

// hold, when pick, holds the first batch it is called for until Release.
func (h *heldRig) hold(pick bool) {
	if !pick {
		return
	}
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.holding)
		<-h.release
	}
}

// awaitHeld waits until the held batch is in the handler.
func (h *heldRig) awaitHeld(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.holding:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not handed to the handler", what)
	}
}

// Release lets the held batch return.
func (h *heldRig) Release() { close(h.release) }

// tries is the Redelivered flag of each try of body.
func (h *heldRig) tries(body string) []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.handled[body]...)
}

// locked runs fn with the record locked.
func (h *heldRig) locked(fn func(handled map[string][]bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h.handled)
}
