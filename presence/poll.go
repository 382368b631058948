package presence

import (
	"context"
	"sync"
	"time"
)

var _ Conn = (*Poll)(nil)

// Poll is one long-poll request waiting for messages: a Conn that lives as long as the
// request. It keeps the first max messages sent to it; the client's next poll starts
// after the last one it was given, and the history holds the rest.
type Poll struct {
	user  string
	since time.Time
	max   int
	ready chan struct{} // closed at the first message or at a drain
	done  chan struct{} // closed once the answer is written

	mu         sync.Mutex
	msgs       []Delivery
	signaled   bool
	drained    bool
	drainAfter time.Duration
}

// NewPoll makes a waiting poll of user that keeps at most max messages.
func NewPoll(user string, max int) *Poll {
	return &Poll{user: user, since: time.Now(), max: max, ready: make(chan struct{}), done: make(chan struct{})}
}

func (p *Poll) User() string      { return p.user }
func (p *Poll) Transport() string { return "poll" }
func (p *Poll) Since() time.Time  { return p.since }

// Send keeps m, whose id here is at, if there is room and wakes the request.
func (p *Poll) Send(m *Message, at Cursor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msgs) < p.max {
		p.msgs = append(p.msgs, Delivery{M: m, At: at})
	}
	p.signalLocked()
}

// Drain makes the request answer now, with a hint to poll again after the delay, and
// waits until it has answered or ctx ends.
func (p *Poll) Drain(ctx context.Context, after time.Duration) {
	p.mu.Lock()
	p.drained, p.drainAfter = true, after
	p.signalLocked()
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

func (p *Poll) signalLocked() {
	if !p.signaled {
		p.signaled = true
		close(p.ready)
	}
}

// Ready is closed when there is something to answer with.
func (p *Poll) Ready() <-chan struct{} { return p.ready }

// Take returns what was sent, and whether and when the client should come back
// elsewhere because this instance drains.
func (p *Poll) Take() (msgs []Delivery, drained bool, after time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs, p.msgs = p.msgs, nil
	return msgs, p.drained, p.drainAfter
}

// Close marks the answer written; a Drain waiting on it returns.
func (p *Poll) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
}
