package apptest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// SSEEvent is one thing a test SSE client read: an event (dispatched at its blank line,
// even without data, so id-only events show) or a comment line.
type SSEEvent struct {
	Event   string // the event: field; "" for the default "message"
	ID      string
	HasID   bool
	Data    string // data: lines joined with \n, as EventSource does
	Retry   string
	Comment string // set for a comment line (": heartbeat"), which is nothing else
}

// SSEClient is a test Server-Sent Events client whose events are read in the background.
type SSEClient struct {
	Resp   *http.Response
	Events chan SSEEvent // closed when the stream ends
	Err    error         // what ended it, valid after Events is closed (nil: the server ended it)
	cancel context.CancelFunc
}

// OpenSSE opens url with header and fails the test unless it answers 200.
func OpenSSE(t testing.TB, url string, header http.Header) *SSEClient {
	t.Helper()
	c, err := ConnectSSE(context.Background(), url, header)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// ConnectSSE is OpenSSE for any goroutine and for clients that reconnect: it returns
// an error (a refused dial, a status other than 200) instead of failing the test, and
// the stream ends with ctx or Close, which the caller must call.
func ConnectSSE(ctx context.Context, url string, header http.Header) (*SSEClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sse request: %w", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("open %s: status %d, want 200", url, resp.StatusCode)
	}
	c := &SSEClient{Resp: resp, Events: make(chan SSEEvent, 1<<12), cancel: cancel}
	go c.read()
	return c, nil
}

func (c *SSEClient) read() {
	defer close(c.Events)
	defer c.Resp.Body.Close()
	sc := bufio.NewScanner(c.Resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev SSEEvent
	var data []string
	pending := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if pending {
				ev.Data = strings.Join(data, "\n")
				c.Events <- ev
			}
			ev, data, pending = SSEEvent{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			c.Events <- SSEEvent{Comment: strings.TrimPrefix(strings.TrimPrefix(line, ":"), " ")}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		pending = true
		switch field {
		case "event":
			ev.Event = value
		case "id":
			ev.ID, ev.HasID = value, true
		case "data":
			data = append(data, value)
		case "retry":
			ev.Retry = value
		}
	}
	c.Err = sc.Err()
}

// Next returns the next event or comment, failing the test if none comes within timeout.
func (c *SSEClient) Next(t testing.TB, timeout time.Duration) SSEEvent {
	t.Helper()
	select {
	case ev, ok := <-c.Events:
		if !ok {
			t.Fatalf("sse stream ended before an event came: %v", c.Err)
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no sse event within %s", timeout)
	}
	return SSEEvent{}
}

// NextEvent returns the next event that has data, skipping comments, retry and id-only
// events.
func (c *SSEClient) NextEvent(t testing.TB, timeout time.Duration) SSEEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := c.Next(t, time.Until(deadline))
		if ev.Comment == "" && (ev.Data != "" || ev.Event != "") {
			return ev
		}
	}
}

// WaitEnd waits for the server to end the stream, failing the test if it does not
// within timeout.
func (c *SSEClient) WaitEnd(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.Events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("sse stream still open after %s", timeout)
		}
	}
}

// Close ends the stream from the client's side.
func (c *SSEClient) Close() { c.cancel() }
