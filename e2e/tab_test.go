package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// tab is one browser tab of a user: a bridge.v1 WebSocket that records every message
// and can resume elsewhere with the id of the last one it saw, as bridge.js does.
type tab struct {
	user string

	mu       sync.Mutex
	ids      []string // each message's own position ("u <epoch>-<seq>" or "b …"), in arrival order
	disorder []string // ids that did not move the tab forward in exactly one stream
	seqs     []int    // the "seq" of targeted messages, in arrival order
	bcasts   []int    // the "b" of broadcasts, in arrival order
	fences   int
	resets   []string
	resumes  int    // welcomes that said the resume was whole
	last     string // cursor: the newest id seen
	instance string // of the current connection
	wake     chan struct{}
	ended    chan struct{} // closed when the current connection ends
}

type frame struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Instance string          `json:"instance"`
	Resumed  bool            `json:"resumed"`
	Cursor   string          `json:"cursor"`
	Reason   string          `json:"reason"`
	AfterMS  int64           `json:"after_ms"` // of a reconnect frame
	Data     json.RawMessage `json:"data"`
}

type payload struct {
	Seq   *int `json:"seq"`
	B     *int `json:"b"`
	Fence bool `json:"fence"`
}

func openTab(user string) *tab { return &tab{user: user, wake: make(chan struct{}, 1)} }

// connect opens the tab on p, resuming after the last id it saw, and reads in the
// background until the connection ends.
func (tb *tab) connect(p *proc) error {
	q := url.Values{"user": {tb.user}}
	tb.mu.Lock()
	if tb.last != "" {
		q.Set("since", tb.last)
	}
	tb.mu.Unlock()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{transport.SubprotocolV1}}
	conn, _, err := d.Dial(p.wsURL("/ws?"+q.Encode()), nil)
	if err != nil {
		return fmt.Errorf("tab %s on %s: %w", tb.user, p.Name, err)
	}
	ended := make(chan struct{})
	tb.mu.Lock()
	tb.ended = ended
	tb.mu.Unlock()
	go func() {
		defer close(ended)
		defer conn.Close()
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			tb.record(data)
		}
	}()
	return nil
}

func (tb *tab) record(data []byte) {
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		tb.mu.Lock()
		tb.resets = append(tb.resets, "undecodable frame: "+string(data))
		tb.mu.Unlock()
		return
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch f.Type {
	case "welcome":
		tb.instance = f.Instance
		if tb.last == "" {
			// A tab with no cursor yet takes the welcome's: the point it started from,
			// so a reconnect before its first message still resumes (as bridge.js does).
			tb.last = f.Cursor
		}
		if f.Resumed {
			tb.resumes++
		}
	case "reset":
		tb.resets = append(tb.resets, f.Reason)
	case "message":
		tb.ids = append(tb.ids, tb.ownPos(f.ID))
		tb.last = f.ID
		var pl payload
		_ = json.Unmarshal(f.Data, &pl)
		switch {
		case pl.Seq != nil:
			tb.seqs = append(tb.seqs, *pl.Seq)
		case pl.B != nil:
			tb.bcasts = append(tb.bcasts, *pl.B)
		case pl.Fence:
			tb.fences++
		}
	}
	select {
	case tb.wake <- struct{}{}:
	default:
	}
}

// ownPos is the position of the message whose id (the connection's cursor after it) is
// id: the stream in which it moved the tab on from its last id. An id that does not
// move exactly one stream on by one (or, after a reset, start anew) is recorded as
// disorder. tb.mu is held.
func (tb *tab) ownPos(id string) string {
	c, err := presence.ParseCursor(id)
	if err != nil {
		tb.disorder = append(tb.disorder, "malformed "+id)
		return id
	}
	p, err := presence.ParseCursor(tb.last)
	if err != nil {
		p = presence.Cursor{}
	}
	next := func(a, b presence.Pos) bool {
		return a.Epoch == b.Epoch && b.Seq == a.Seq+1 || a.Epoch != b.Epoch && b.Seq >= 1
	}
	switch {
	case c.Bcast == p.Bcast && next(p.User, c.User):
		return fmt.Sprintf("u %s-%d", c.User.Epoch, c.User.Seq)
	case c.User == p.User && next(p.Bcast, c.Bcast):
		return fmt.Sprintf("b %s-%d", c.Bcast.Epoch, c.Bcast.Seq)
	}
	tb.disorder = append(tb.disorder, tb.last+" -> "+id)
	return id
}

// waitUntil waits until cond holds over the tab's state, or fails after timeout.
func (tb *tab) waitUntil(t *testing.T, timeout time.Duration, what string, cond func(tb *tab) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tb.mu.Lock()
		ok := cond(tb)
		got := len(tb.ids)
		tb.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-tb.wake:
		case <-deadline.C:
			t.Fatalf("tab of %s: %s not within %s (it has %d messages)", tb.user, what, timeout, got)
		}
	}
}

// check reports, for a tab that should have read exactly the targeted seqs 0..n-1
// and broadcasts 0..b-1: anything missing, repeated or out of id order.
func (tb *tab) check(t *testing.T, n, b int) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.disorder) > 0 {
		t.Errorf("tab of %s: ids out of order (a duplicate or a reorder): %q", tb.user, tb.disorder)
	}
	if len(tb.resets) > 0 {
		t.Errorf("tab of %s: reset frames %q: messages were lost", tb.user, tb.resets)
	}
	exactlyOnce(t, tb.user+" targeted", tb.seqs, n)
	exactlyOnce(t, tb.user+" broadcast", tb.bcasts, b)
}

// exactlyOnce checks that got holds each of 0..n-1 once.
func exactlyOnce(t *testing.T, what string, got []int, n int) {
	t.Helper()
	seen := make([]int, n)
	for _, s := range got {
		if s < 0 || s >= n {
			t.Errorf("%s: unexpected %d", what, s)
			return
		}
		seen[s]++
	}
	for s, k := range seen {
		if k != 1 {
			t.Errorf("%s: message %d received %d times, want exactly once (%d received in all, want %d)", what, s, k, len(got), n)
			return
		}
	}
}
