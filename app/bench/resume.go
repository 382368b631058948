package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// resumeEvent is what a resumable client reads: its greeting (hello, with the
// welcome's cursor), a message (body and its id), or a bare new resume point.
type resumeEvent struct {
	hello    bool   // the connection is up: the welcome (ws, sse) or the first poll answer
	instance string // the welcome's: the instance that took the connection (poll: "")
	cursor   string // welcome: the newest id at connect; otherwise the resume point from here on
	body     []byte // a message's body, nil for anything else
}

// resumeConn is one connection of a client that resumes: read hands each event to
// see until the connection ends; close ends it at once (it may be called from any
// goroutine, and more than once).
type resumeConn interface {
	read(see func(resumeEvent))
	close()
}

// resumeDial opens one connection of a client that resumes: user's, from src when
// set, from cursor when not empty.
type resumeDial func(user string, src net.IP, cursor string) (resumeConn, error)

// resumeDialer opens o.transport connections to the server at base (one of o.urls) the
// way bridge.js does: bridge.v1 on a WebSocket (?since=), Last-Event-ID on SSE, cursor
// on poll (the first poll after a (re)connect with wait=0). Ids are opaque to it: it
// only hands them back.
func resumeDialer(ctx context.Context, o benchOpts, base string) resumeDial {
	switch o.transport {
	case "sse":
		clients := benchHTTPClients(o)
		return func(user string, src net.IP, cursor string) (resumeConn, error) {
			return dialResumeSSE(ctx, clients(src), base, user, cursor)
		}
	case "poll":
		clients := benchHTTPClients(o)
		return func(user string, src net.IP, cursor string) (resumeConn, error) {
			ctx, cancel := context.WithCancel(ctx)
			return &resumePoll{ctx: ctx, cancel: cancel, hc: clients(src), base: base + "/poll?user=" + url.QueryEscape(user), cursor: cursor}, nil
		}
	}
	return func(user string, src net.IP, cursor string) (resumeConn, error) {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256,
			Subprotocols: []string{"bridge.v1"}}
		if src != nil {
			d.NetDial = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}).Dial
		}
		q := url.Values{"user": {user}}
		if cursor != "" {
			q.Set("since", cursor)
		}
		c, _, err := d.DialContext(ctx, wsBase(base)+"/ws?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		return resumeWS{c}, nil
	}
}

type resumeWS struct{ c *websocket.Conn }

// v1Frame is the part of a bridge.v1 frame the bench reads.
type v1Frame struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Cursor   string          `json:"cursor"`
	Instance string          `json:"instance"`
	Data     json.RawMessage `json:"data"`
}

func (r resumeWS) read(see func(resumeEvent)) {
	for {
		_, data, err := r.c.ReadMessage()
		if err != nil {
			return
		}
		var f v1Frame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "welcome":
			see(resumeEvent{hello: true, instance: f.Instance, cursor: f.Cursor})
		case "message":
			see(resumeEvent{cursor: f.ID, body: f.Data}) // the bench's bodies are JSON: data is the body
		}
	}
}

// close cuts the TCP connection without a close frame: the server sees a dead socket.
func (r resumeWS) close() { r.c.NetConn().Close() }

// resumeSSE reads a plain /sse stream the way an EventSource does: any id: line moves
// the resume point (messages, and the id-only event after a replay).
type resumeSSE struct {
	body   *bufio.Reader
	cancel context.CancelFunc
}

func dialResumeSSE(ctx context.Context, hc *http.Client, base, user, cursor string) (resumeConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	q := url.Values{"user": {user}}
	if cursor != "" {
		q.Set("lastEventId", cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+q.Encode(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("sse answered %s", resp.Status)
	}
	return &resumeSSE{body: bufio.NewReader(resp.Body), cancel: func() { cancel(); resp.Body.Close() }}, nil
}

func (r *resumeSSE) read(see func(resumeEvent)) {
	var data []byte
	var event, id string
	hasID := false
	for {
		line, err := r.body.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // the end of an event
			switch {
			case event == "welcome":
				var f v1Frame
				if json.Unmarshal(data, &f) == nil {
					see(resumeEvent{hello: true, instance: f.Instance, cursor: f.Cursor})
				}
			case event == "" && data != nil:
				see(resumeEvent{cursor: id, body: data})
			case event == "" && hasID:
				see(resumeEvent{cursor: id})
			}
			data, event, id, hasID = nil, "", "", false
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("id:")):
			id, hasID = string(bytes.TrimSpace(line[len("id:"):])), true
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
}

func (r *resumeSSE) close() { r.cancel() }

// resumePoll long-polls from a cursor; the first poll of each connection answers at
// once (wait=0), as bridge.js's does, and counts as its greeting.
type resumePoll struct {
	ctx    context.Context
	cancel context.CancelFunc
	hc     *http.Client
	base   string
	cursor string
}

type resumePollAnswer struct {
	Messages []struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
}

func (r *resumePoll) read(see func(resumeEvent)) {
	for first := true; ; first = false {
		u := r.base
		if r.cursor != "" {
			u += "&cursor=" + url.QueryEscape(r.cursor)
		}
		if first {
			u += "&wait=0"
		}
		a, err := r.poll(u)
		if err != nil {
			return
		}
		if first {
			see(resumeEvent{hello: true})
		}
		for _, m := range a.Messages {
			see(resumeEvent{cursor: m.ID, body: m.Data})
		}
		r.cursor = a.Cursor
		see(resumeEvent{cursor: a.Cursor}) // bridge.js resumes from the answer's cursor
	}
}

func (r *resumePoll) poll(u string) (*resumePollAnswer, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll answered %s", resp.Status)
	}
	var a resumePollAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, err
	}
	return &a, nil
}

func (r *resumePoll) close() { r.cancel() }
