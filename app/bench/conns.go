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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// benchConn is one bench client on one transport: read hands each delivered message
// body to take until the connection ends; close ends it.
type benchConn interface {
	read(take func(body []byte))
	close()
}

// benchTransports are what -transport takes; benchDialer opens each.
var benchTransports = []string{"ws", "sse", "poll"}

// benchDialer opens o.transport connections of a user to the server at base (one of
// o.urls), from src when set.
func benchDialer(ctx context.Context, o benchOpts, base string) func(user string, src net.IP) (benchConn, error) {
	switch o.transport {
	case "sse":
		clients := benchHTTPClients(o)
		return func(user string, src net.IP) (benchConn, error) { return dialBenchSSE(ctx, clients(src), base, user) }
	case "poll":
		clients := benchHTTPClients(o)
		return func(user string, src net.IP) (benchConn, error) { return dialBenchPoll(ctx, clients(src), base, user) }
	}
	return func(user string, src net.IP) (benchConn, error) {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256}
		if src != nil {
			d.NetDial = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}).Dial
		}
		c, _, err := d.DialContext(ctx, wsBase(base)+"/ws/yxd/"+url.PathEscape(user), nil)
		if err != nil {
			return nil, err
		}
		return benchWS{c}, nil
	}
}

// benchHTTPClients returns the HTTP client of each source address, made on first use:
// one transport per source, keeping a connection per client alive between polls. It
// may be called from many goroutines (-jitter's clients dial again on their own).
func benchHTTPClients(o benchOpts) func(src net.IP) *http.Client {
	byIP := map[string]*http.Client{}
	var mu sync.Mutex
	return func(src net.IP) *http.Client {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := byIP[src.String()]; ok {
			return c
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		if src != nil {
			d.LocalAddr = &net.TCPAddr{IP: src}
		}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: o.conns, DisableCompression: true}}
		byIP[src.String()] = c
		return c
	}
}

type benchWS struct{ c *websocket.Conn }

func (b benchWS) read(take func([]byte)) {
	for {
		_, data, err := b.c.ReadMessage()
		if err != nil {
			return
		}
		take(data)
	}
}

func (b benchWS) close() { b.c.Close() }

// benchSSE reads a plain /sse stream: each unnamed event's data is a message body.
type benchSSE struct {
	body   *bufio.Reader
	cancel context.CancelFunc
}

func dialBenchSSE(ctx context.Context, hc *http.Client, base, user string) (benchConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?user="+url.QueryEscape(user), nil)
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
	return &benchSSE{body: bufio.NewReader(resp.Body), cancel: func() { cancel(); resp.Body.Close() }}, nil
}

func (b *benchSSE) read(take func([]byte)) {
	var data []byte
	named := false
	for {
		line, err := b.body.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // the end of an event
			if !named && data != nil {
				take(data)
			}
			data, named = nil, false
		case bytes.HasPrefix(line, []byte("event:")):
			named = true // welcome, reset, reconnect: not a message
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
}

func (b *benchSSE) close() { b.cancel() }

// benchPoll long-polls /poll from the newest cursor on.
type benchPoll struct {
	ctx    context.Context
	cancel context.CancelFunc
	hc     *http.Client
	base   string
	cursor string
}

type benchPollAnswer struct {
	Messages []struct {
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
}

func dialBenchPoll(ctx context.Context, hc *http.Client, base, user string) (benchConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	b := &benchPoll{ctx: ctx, cancel: cancel, hc: hc, base: base + "/poll?user=" + url.QueryEscape(user)}
	// Without a cursor a poll answers at once with the newest one: where this client starts.
	if _, err := b.poll(); err != nil {
		cancel()
		return nil, err
	}
	return b, nil
}

func (b *benchPoll) poll() ([]json.RawMessage, error) {
	u := b.base
	if b.cursor != "" {
		u += "&cursor=" + url.QueryEscape(b.cursor)
	}
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests { // over the user's budget: poll again when told
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		select {
		case <-time.After(time.Duration(max(secs, 1)) * time.Second):
			return nil, nil
		case <-b.ctx.Done():
			return nil, b.ctx.Err()
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll answered %s", resp.Status)
	}
	var a benchPollAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, err
	}
	b.cursor = a.Cursor
	out := make([]json.RawMessage, len(a.Messages))
	for i, m := range a.Messages {
		out[i] = m.Data // the bench's bodies are JSON, so data is the body itself
	}
	return out, nil
}

func (b *benchPoll) read(take func([]byte)) {
	for {
		msgs, err := b.poll()
		if err != nil {
			return
		}
		for _, m := range msgs {
			take(m)
		}
	}
}

func (b *benchPoll) close() { b.cancel() }

// wsBase is the WebSocket form of an http(s) base URL: ws(s)://host[/path].
func wsBase(base string) string { return "ws" + strings.TrimPrefix(base, "http") }

// sourceOf is the source address of connection i: spread over 127.0.0.2.. with
// -sources above 1, so that no one address runs out of ports.
func sourceOf(o benchOpts, i int) net.IP {
	if o.sources > 1 {
		return net.IPv4(127, 0, 0, byte(2+i%o.sources))
	}
	return nil
}
