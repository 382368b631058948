package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

// How a fault test's client behaves: bridge.js's rules, with a shorter backoff cap so
// that "delivery resumes within a few seconds" measures the server, not the client's
// patience after a long outage.
const (
	clientBackoffBase  = 500 * time.Millisecond // bridge.js backoffBase
	clientBackoffMax   = 2 * time.Second        // bridge.js caps at 30 s
	clientStableAfter  = 10 * time.Second       // bridge.js stableAfter: an open this long resets the backoff
	clientOpenTimeout  = 5 * time.Second        // bridge.js openTimeout: no welcome by then, try again
	clientDedupe       = 1000                   // bridge.js dedupeWindow: ids already delivered are dropped
	clientMinEmptyPoll = time.Second            // bridge.js: an empty poll answer faster than this waits this
	clientPollGrace    = 5 * time.Second        // beyond the server's longest poll wait before a poll counts as lost
)

// transports a fault test's clients use, in turn.
var faultTransports = []string{"ws", "sse", "poll"}

// resumer is one page with bridge.js: one user, one transport, reconnecting with
// backoff to whichever instance of the fleet comes next, resuming after the last id
// it delivered (or the first welcome's cursor). Ids are opaque to it; what it got is
// judged by content (tally).
type resumer struct {
	user, transport string
	fleet           *fleet
	home            int // the instance it tries first

	mu       sync.Mutex
	cursor   string
	seen     map[string]bool // the last clientDedupe ids delivered
	seenFIFO []string
	hint     time.Duration // a reconnect frame's after_ms, for the next delay
	tally    tally
	welcomed chan struct{} // closed at the first welcome (poll: first answer)
	instance string        // of the last welcome
	connects int
	errs     []string // why sessions ended, the last few
}

func newResumer(user, transport string, fl *fleet, home int) *resumer {
	return &resumer{user: user, transport: transport, fleet: fl, home: home,
		seen: map[string]bool{}, welcomed: make(chan struct{}), tally: newTally(user)}
}

// run connects and reconnects until ctx ends.
func (r *resumer) run(ctx context.Context) {
	attempt := 0
	for i := r.home; ctx.Err() == nil; i++ {
		started := time.Now()
		opened, err := r.session(ctx, r.fleet.url(i))
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.errs = append(r.errs, err.Error())
		if len(r.errs) > 5 {
			r.errs = r.errs[1:]
		}
		hint := r.hint
		r.hint = 0
		r.mu.Unlock()
		stable := opened && time.Since(started) >= clientStableAfter
		if stable {
			attempt = 0
		}
		delay := time.Duration(rand.Int64N(int64(min(clientBackoffMax, clientBackoffBase<<attempt))))
		attempt = min(attempt+1, 10)
		if hint > 0 {
			delay = max(hint, delay)
			if stable {
				delay = hint
			}
		}
		backoff := time.NewTimer(delay) // the client's own pace, not a wait for an event
		select {
		case <-backoff.C:
		case <-ctx.Done():
			backoff.Stop()
			return
		}
	}
}

// session is one connection on base; it returns when the connection ends (never nil
// error: why it ended) and whether it opened (a welcome came).
func (r *resumer) session(ctx context.Context, base string) (bool, error) {
	r.mu.Lock()
	r.connects++
	cursor := r.cursor
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opened := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(opened) }) }
	go func() { // bridge.js's openTimeout
		t := time.NewTimer(clientOpenTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-opened:
		case <-ctx.Done():
		}
	}()
	var err error
	switch r.transport {
	case "ws":
		err = r.ws(ctx, base, cursor, open)
	case "sse":
		err = r.sse(ctx, base, cursor, open)
	default:
		err = r.poll(ctx, base, open)
	}
	select {
	case <-opened:
		return true, err
	default:
		return false, fmt.Errorf("no welcome within %s: %w", clientOpenTimeout, err)
	}
}

func (r *resumer) ws(ctx context.Context, base, cursor string, open func()) error {
	q := url.Values{"user": {r.user}}
	if cursor != "" {
		q.Set("since", cursor)
	}
	u, _ := url.Parse(base)
	u.Scheme, u.Path, u.RawQuery = "ws", "/ws", q.Encode()
	d := websocket.Dialer{HandshakeTimeout: clientOpenTimeout, Subprotocols: []string{transport.SubprotocolV1}}
	conn, _, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		return fmt.Errorf("ws dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("ws read: %w", err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			r.undecodable(data)
			continue
		}
		if f.Type == "welcome" {
			open()
		}
		r.frame(f, data)
	}
}

func (r *resumer) sse(ctx context.Context, base, cursor string, open func()) error {
	q := url.Values{"user": {r.user}, "protocol": {transport.SubprotocolV1}}
	if cursor != "" {
		q.Set("lastEventId", cursor)
	}
	c, err := apptest.ConnectSSE(ctx, base+"/sse?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer c.Close()
	for ev := range c.Events {
		if ev.Comment != "" || ev.Data == "" {
			continue // heartbeats, retry, id-only events
		}
		var f frame
		if err := json.Unmarshal([]byte(ev.Data), &f); err != nil {
			r.undecodable([]byte(ev.Data))
			continue
		}
		f.Type = ev.Event // as bridge.js: the event names the frame
		if f.Type == "" {
			f.Type = "message"
		}
		if f.Type == "welcome" {
			open()
		}
		r.frame(f, []byte(ev.Data))
	}
	if c.Err != nil {
		return fmt.Errorf("sse read: %w", c.Err)
	}
	return errors.New("sse stream ended")
}

// pollClient answers polls; a poll's longest wait is the server's, plus grace.
var pollClient = &http.Client{Timeout: handlers.PollWait + clientPollGrace}

type pollAnswer struct {
	Messages  []json.RawMessage `json:"messages"`
	Cursor    string            `json:"cursor"`
	Reset     bool              `json:"reset"`
	Reason    string            `json:"reason"`
	Reconnect *frame            `json:"reconnect"`
}

func (r *resumer) poll(ctx context.Context, base string, open func()) error {
	for first := true; ; first = false {
		r.mu.Lock()
		q := url.Values{"user": {r.user}}
		if r.cursor != "" {
			q.Set("cursor", r.cursor)
		}
		r.mu.Unlock()
		if first {
			q.Set("wait", "0") // as bridge.js: the first answer proves the transport
		}
		started := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/poll?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		resp, err := pollClient.Do(req)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		var ans pollAnswer
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("poll answered %d", resp.StatusCode)
		}
		if err != nil {
			return fmt.Errorf("poll answer: %w", err)
		}
		if first {
			open()
			r.frame(frame{Type: "welcome", Cursor: ans.Cursor}, nil)
		}
		if ans.Reset {
			r.frame(frame{Type: "reset", Reason: ans.Reason}, nil)
		}
		for _, m := range ans.Messages {
			var f frame
			if err := json.Unmarshal(m, &f); err != nil {
				r.undecodable(m)
				continue
			}
			r.frame(f, m)
		}
		r.mu.Lock()
		if ans.Cursor != "" {
			r.cursor = ans.Cursor
		}
		r.mu.Unlock()
		if ans.Reconnect != nil {
			r.frame(*ans.Reconnect, nil)
			return errors.New("poll: server asked to reconnect")
		}
		if !first && len(ans.Messages) == 0 && time.Since(started) < clientMinEmptyPoll {
			t := time.NewTimer(clientMinEmptyPoll) // bridge.js's pace after a fast empty answer
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
}

// frame handles one bridge.v1 frame as bridge.js does, and tallies what the page saw.
func (r *resumer) frame(f frame, raw []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch f.Type {
	case "welcome":
		if r.cursor == "" {
			r.cursor = f.Cursor
		}
		if f.Instance != "" {
			r.instance = f.Instance
		}
		select {
		case <-r.welcomed:
		default:
			close(r.welcomed)
		}
	case "message":
		if f.ID != "" {
			if r.seen[f.ID] {
				r.tally.wireRepeats++
				return
			}
			r.seen[f.ID] = true
			r.seenFIFO = append(r.seenFIFO, f.ID)
			if len(r.seenFIFO) > clientDedupe {
				delete(r.seen, r.seenFIFO[0])
				r.seenFIFO = r.seenFIFO[1:]
			}
			r.cursor = f.ID
		}
		r.tally.message(f.Data, raw)
	case "reset":
		r.tally.resets = append(r.tally.resets, f.Reason)
		r.tally.resetAt = append(r.tally.resetAt, time.Now())
	case "reconnect":
		r.hint = time.Duration(f.AfterMS) * time.Millisecond
	}
}

func (r *resumer) undecodable(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tally.strays = append(r.tally.strays, "undecodable frame: "+string(data))
}

// snapshot copies the tally under the lock.
func (r *resumer) snapshot() tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tally.clone()
}
