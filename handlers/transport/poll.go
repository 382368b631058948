package transport

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

var _ presence.Conn = (*Poll)(nil)

// Poll is one long-poll request waiting for messages: a Conn that lives as long as the
// request. It keeps the first max messages sent to it that its subscription wants; the
// client's next poll starts after the last one it was given, and the history holds
// the rest. Its replay is kept whole (see Replayed): the answer's cursor moves past
// the messages the subscription leaves out.
type Poll struct {
	user     string
	since    time.Time
	max      int
	maxBytes int
	topics   *presence.Topics
	ready    chan struct{} // closed at the first message or at a drain
	done     chan struct{} // closed once the answer is written

	mu         sync.Mutex
	replay     *presence.Replay
	msgs       []presence.Delivery
	signaled   bool
	drained    bool
	drainAfter time.Duration
}

// NewPoll makes a waiting poll of user that keeps at most max messages of those topics
// wants (nil: every message), and replays at most maxBytes of history.
func NewPoll(user string, max, maxBytes int, topics *presence.Topics) *Poll {
	return &Poll{user: user, since: time.Now(), max: max, maxBytes: maxBytes, topics: topics, ready: make(chan struct{}), done: make(chan struct{})}
}

func (p *Poll) User() string      { return p.user }
func (p *Poll) Transport() string { return "poll" }
func (p *Poll) Since() time.Time  { return p.since }

// Send keeps what of ds the subscription wants while there is room, and wakes the
// request.
func (p *Poll) Send(ds []presence.Delivery) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range ds {
		if len(p.msgs) < p.max && p.topics.Wants(d.M) {
			p.msgs = append(p.msgs, d)
		}
	}
	p.signalLocked()
}

// Room is the bytes of history one answer holds: a poll reads what it missed once,
// and the next poll the rest.
func (p *Poll) Room() (msgs, bytes int) { return p.max, p.maxBytes }

// WhenRoom never calls fn: a poll answers once, and the next poll reads on from its
// cursor.
func (p *Poll) WhenRoom(func()) {}

// Replay keeps rp, whole, for the answer (see Replayed).
func (p *Poll) Replay(rp *presence.Replay) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replay = rp
}

// Replayed is what the poll was given when it attached: every message after its
// cursor, the ones its subscription leaves out too.
func (p *Poll) Replayed() *presence.Replay {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replay
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
func (p *Poll) Take() (msgs []presence.Delivery, drained bool, after time.Duration) {
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

// PollTail is the poll answer after its messages.
type PollTail struct {
	Cursor    string     `json:"cursor"` // where the next poll starts
	Reset     bool       `json:"reset"`  // messages after the given cursor were missed for good
	Reason    string     `json:"reason,omitempty"`
	Reconnect *Reconnect `json:"reconnect,omitempty"` // this instance drains: poll again after after_ms
}

// PollAnswer is a poll's answer, {"messages":[…],"cursor":…,"reset":…}: the messages
// as their bridge.v1 frames, each with its id on this poll, then the tail.
func PollAnswer(msgs []presence.Delivery, tail PollTail) []byte {
	// Each frame is written in place from its shared part (see V1JSON), the buffer
	// sized for all of them at once.
	size := 64
	for _, d := range msgs {
		size += len(v1Pre) + presence.MaxCursorLen + len(v1Post(d.M)) + 1
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	b.WriteString(`{"messages":[`)
	var id [presence.MaxCursorLen]byte
	for i, d := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v1Pre)
		b.Write(d.At.Append(id[:0]))
		b.Write(v1Post(d.M))
	}
	b.WriteString("],")
	t := mustJSON(tail)
	b.Write(t[1:]) // the tail object without its opening brace
	return b.Bytes()
}
