package app_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

const wait = 10 * time.Second

// TestSameBytesEveryTransport: raw WebSocket, SSE (plain and bridge.v1) and poll carry
// the same bytes for JSON with its own spacing, multi-line text and a broadcast.
func TestSameBytesEveryTransport(t *testing.T) {
	s, tp := rabbitServer(t, nil)
	ws := apptest.DialWS(t, s.WSURL("/ws?user=u"), "", nil)
	sse := apptest.OpenSSE(t, s.URL+"/sse?user=u", nil)
	sseV1 := apptest.OpenSSE(t, s.URL+"/sse?user=u&protocol=bridge.v1", nil)
	cursor := poll(t, s, q("user", "u")).Cursor
	apptest.Eventually(t, wait, "3 connections", func() bool { return connCount(t, s) == 3 })

	bodies := []struct{ header, body string }{
		{"", `{"receiveUserId": "u",  "text": "spaced json", "n": [1, 2]}`},
		{"u", "line one\nline two\n\nafter a blank line"},
		{"", `{"routingKey":"contract","text":"to everyone"}`},
		{"u", "plain text ending in a newline\n"},
	}
	for _, b := range bodies {
		publishTo(t, s, tp, b.header, []byte(b.body))
	}
	var polled []pollFrame
	for len(polled) < len(bodies) {
		a := poll(t, s, q("user", "u", "cursor", cursor, "wait", "5s"))
		polled, cursor = append(polled, a.Messages...), a.Cursor
	}
	for i, b := range bodies {
		if got := string(ws.Next(t, wait).Data); got != b.body {
			t.Errorf("raw ws %d: %q, want %q", i, got, b.body)
		}
		ev := sse.NextEvent(t, wait)
		if ev.Event != "" && ev.Event != "message" {
			ev = sse.NextEvent(t, wait) // the welcome
		}
		if ev.Data != b.body {
			t.Errorf("sse %d: %q, want %q", i, ev.Data, b.body)
		}
		if ev.ID != polled[i].ID {
			t.Errorf("sse %d: id %q, poll says %q", i, ev.ID, polled[i].ID)
		}
		if got := bodyOfData(t, polled[i].Data); got != b.body {
			t.Errorf("poll %d: %q, want %q", i, got, b.body)
		}
		ev = sseV1.NextEvent(t, wait)
		if ev.Event == "welcome" {
			ev = sseV1.NextEvent(t, wait)
		}
		var f pollFrame
		if err := json.Unmarshal([]byte(ev.Data), &f); err != nil {
			t.Fatalf("sse bridge.v1 %d: %q: %v", i, ev.Data, err)
		}
		if got := bodyOfData(t, f.Data); got != b.body || f.ID != ev.ID || f.RoutingKey != "contract" {
			t.Errorf("sse bridge.v1 %d: %+v (id %s), want body %q", i, f, ev.ID, b.body)
		}
	}
}

func TestSSEHeadersAndHeartbeat(t *testing.T) {
	s, _ := rabbitServer(t, map[string]string{"BRIDGE_HEARTBEAT": "100ms"})
	// Asking for gzip ourselves keeps Go's client from hiding a Content-Encoding.
	c := apptest.OpenSSE(t, s.URL+"/sse?user=h", http.Header{"Accept-Encoding": {"gzip"}})
	h := c.Resp.Header
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
		"Content-Encoding":  "",
		"Content-Length":    "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
	if ev := c.Next(t, wait); ev.Retry != "2000" {
		t.Errorf("first event %+v, want retry: 2000", ev)
	}
	for {
		if ev := c.Next(t, wait); ev.Comment == "heartbeat" {
			return
		}
	}
}

func TestSSEEndsBeforeMaxAge(t *testing.T) {
	s, _ := rabbitServer(t, map[string]string{"BRIDGE_MAX_CONNECTION_AGE": "1s"})
	c := apptest.OpenSSE(t, s.URL+"/sse?user=a", nil)
	if ev := c.NextEvent(t, wait); ev.Event != "welcome" {
		t.Fatalf("first event %+v, want welcome", ev)
	}
	ev := c.NextEvent(t, wait)
	if ev.Event != "reconnect" || !strings.Contains(ev.Data, `"max connection age"`) {
		t.Fatalf("got %+v, want a reconnect event for the max age", ev)
	}
	c.WaitEnd(t, wait)
}

// TestWSEndsBeforeMaxAge: a WebSocket ends itself at BRIDGE_MAX_CONNECTION_AGE (up to
// 10 % early), bridge.v1 with a reconnect frame first, both modes with close 1001.
func TestWSEndsBeforeMaxAge(t *testing.T) {
	const maxAge = time.Second
	s, _ := rabbitServer(t, map[string]string{"BRIDGE_MAX_CONNECTION_AGE": maxAge.String()})
	opened := time.Now()
	v1 := apptest.DialWS(t, s.WSURL("/ws?user=a"), "bridge.v1", nil)
	raw := apptest.DialWS(t, s.WSURL("/ws?user=a"), "", nil)
	if f := v1.Next(t, wait); !strings.Contains(string(f.Data), `"type":"welcome"`) {
		t.Fatalf("first frame %s, want welcome", f.Data)
	}
	if f := v1.Next(t, wait); !strings.Contains(string(f.Data), `"type":"reconnect"`) || !strings.Contains(string(f.Data), `"max connection age"`) {
		t.Fatalf("got %s, want a reconnect frame for the max age", f.Data)
	}
	for name, c := range map[string]*apptest.WSClient{"bridge.v1": v1, "raw": raw} {
		select {
		case f, ok := <-c.Frames:
			if ok {
				t.Fatalf("%s: frame %s, want the connection to end", name, f.Data)
			}
		case <-time.After(wait):
			t.Fatalf("%s: the connection did not end", name)
		}
		var ce *websocket.CloseError
		if !errors.As(c.Err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Errorf("%s: ended with %v, want close code 1001", name, c.Err)
		}
	}
	if age := time.Since(opened); age < maxAge*9/10 {
		t.Errorf("connections ended after %s, before 90%% of the max age %s", age, maxAge)
	}
}

// TestDrainEndsStreamsAndPolls: on stop, an SSE stream gets a reconnect event and ends,
// and a waiting poll answers with a reconnect hint, so the HTTP server's Shutdown is not
// held up by them.
func TestDrainEndsStreamsAndPolls(t *testing.T) {
	s, _ := rabbitServer(t, map[string]string{"BRIDGE_SHUTDOWN_TIMEOUT": "20s"})
	c := apptest.OpenSSE(t, s.URL+"/sse?user=d", nil)
	head := poll(t, s, q("user", "d")).Cursor
	answer := make(chan pollAnswer, 1)
	go func() {
		a, err := pollErr(s, q("user", "d", "cursor", head))
		if err != nil {
			t.Errorf("poll: %v", err)
		}
		answer <- a
	}()
	apptest.Eventually(t, wait, "stream and poll registered", func() bool { return connCount(t, s) == 2 })
	s.Stop(t)

	if ev := c.NextEvent(t, wait); ev.Event != "welcome" {
		t.Fatalf("first event %+v, want welcome", ev)
	}
	if ev := c.NextEvent(t, wait); ev.Event != "reconnect" || !strings.Contains(ev.Data, `"draining"`) {
		t.Fatalf("got %+v, want a reconnect event", ev)
	}
	c.WaitEnd(t, wait)
	select {
	case a := <-answer:
		if a.Reconnect == nil || a.Reconnect.Reason != "draining" || a.Cursor != head {
			t.Fatalf("poll answer %+v, want a draining reconnect hint and cursor %s", a, head)
		}
	case <-time.After(wait):
		t.Fatal("the waiting poll did not answer on drain")
	}
	if log := s.Stderr.String(); strings.Contains(log, "http shutdown") {
		t.Fatalf("the HTTP server's shutdown was held up:\n%s", log)
	}
}

// TestSendAPI: POST /api/send publishes to RabbitMQ as the authenticated user, where a
// backend's queue receives it with x-user-id stamped by the server.
func TestSendAPI(t *testing.T) {
	s, tp := rabbitServer(t, map[string]string{"BRIDGE_ALLOWED_ORIGINS": "http://good.example"})
	backend := consumeKeys(t, tp, "from_clients")

	send := func(query, origin, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/send"+query, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		name, query, origin, body string
		status                    int
	}{
		{"no user", "", "", `{"data":"x"}`, 401},
		{"origin not allowed", "?user=me", "http://evil.example", `{"data":"x"}`, 403},
		{"malformed", "?user=me", "", `{"data":`, 400},
		{"no data", "?user=me", "", `{"routingKey":"contract"}`, 422},
		{"unknown field", "?user=me", "", `{"data":"x","receiveUserId":"other"}`, 422},
		{"a key this gateway consumes", "?user=me", "", `{"routingKey":"contract","data":"x"}`, 403},
	} {
		if resp := send(tc.query, tc.origin, tc.body); resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	resp := send("?user=me", "http://good.example", `{"routingKey":"from_clients","data":{"hello":"world"}}`)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Access-Control-Allow-Origin") != "http://good.example" {
		t.Fatalf("send: status %d, CORS %q; want 202 for the allowed origin", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	d := nextDelivery(t, backend)
	if string(d.Body) != `{"hello":"world"}` || d.Headers["x-user-id"] != "me" {
		t.Fatalf("backend got %q with x-user-id %v, want the data from user me", d.Body, d.Headers["x-user-id"])
	}
}

func TestPollBadWait(t *testing.T) {
	s, _ := rabbitServer(t, nil)
	for _, w := range []string{"soon", "-1s", "26s"} {
		resp, err := http.Get(s.URL + "/poll?user=a&cursor=1&wait=" + w)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("wait=%s: status %d, want 400", w, resp.StatusCode)
		}
	}
}
