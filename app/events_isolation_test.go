package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Events go to the backend only: while user a comes online, confirms a message and
// goes offline, user b's connections on every transport (WebSocket raw and bridge.v1,
// SSE, a waiting poll) hear nothing of it — the next thing each gets is b's own
// message — and the presence routes are closed to clients (they need BRIDGE_API_KEY,
// which dev mode leaves open only when none is set).
func TestNoClientSeesAnotherUsersPresenceOrReceipts(t *testing.T) {
	tap := newEventsTap(t)
	s, tp := rabbitServer(t, map[string]string{"BRIDGE_EVENTS_EXCHANGE": tap.Exchange, "BRIDGE_OFFLINE_GRACE": "100ms", "BRIDGE_API_KEY": "k"})

	raw := apptest.DialWS(t, s.WSURL("/ws?user=b"), "", nil)
	v1 := apptest.DialWS(t, s.WSURL("/ws?user=b"), "bridge.v1", nil)
	if f := v1Frame(t, v1.Next(t, wait).Data); jsonString(t, f["type"]) != "welcome" {
		t.Fatalf("first frame %v", f)
	}
	sse := apptest.OpenSSE(t, s.URL+"/sse?user=b&protocol=bridge.v1", nil)
	if ev := sseData(t, sse); !strings.Contains(ev.Data, `"welcome"`) {
		t.Fatalf("first SSE event %+v, want the welcome", ev)
	}
	head := poll(t, s, q("user", "b")).Cursor
	polled := make(chan pollAnswer, 1)
	go func() {
		a, err := pollErr(s, q("user", "b", "cursor", head, "wait", "20s"))
		if err != nil {
			t.Error(err)
		}
		polled <- a
	}()
	if ev := tap.nextJSON(t, wait); ev.Type != "user.online" || ev.User != "b" {
		t.Fatalf("event %+v, want b online", ev)
	}

	a := apptest.DialWS(t, s.WSURL("/ws?user=a"), "bridge.v1", nil)
	a.Next(t, wait) // welcome
	publishAs(t, tp, "a", []byte(`{"for":"a"}`), "ma", "")
	id := jsonString(t, v1Frame(t, a.Next(t, wait).Data)["id"])
	if err := a.Conn.WriteMessage(1, []byte(`{"type":"ack","ids":["`+id+`"]}`)); err != nil {
		t.Fatal(err)
	}
	a.Conn.Close()
	for _, want := range []string{"user.online", "message.received", "user.offline"} {
		if ev := tap.nextJSON(t, wait); ev.Type != want || ev.User != "a" {
			t.Fatalf("event %+v, want %s of a", ev, want)
		}
	}

	publishAs(t, tp, "b", []byte(`{"for":"b"}`), "mb", "")
	if f := raw.Next(t, wait); string(f.Data) != `{"for":"b"}` {
		t.Errorf("raw WebSocket of b got %s first", f.Data)
	}
	if f := v1Frame(t, v1.Next(t, wait).Data); jsonString(t, f["type"]) != "message" || string(f["data"]) != `{"for":"b"}` {
		t.Errorf("bridge.v1 WebSocket of b got %v first", f)
	}
	if ev := sseData(t, sse); !strings.Contains(ev.Data, `{"for":"b"}`) {
		t.Errorf("SSE of b got %+v first", ev)
	}
	if ans := <-polled; len(ans.Messages) != 1 || string(ans.Messages[0].Data) != `{"for":"b"}` {
		t.Errorf("poll of b answered %+v", ans.Messages)
	}
	for _, path := range []string{"/api/presence/a?user=b", "/api/presence?user=b"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s as a client: %d, want 401/403", path, resp.StatusCode)
		}
	}
}

// sseData is the next SSE event that carries data (not a retry or a comment).
func sseData(t *testing.T, c *apptest.SSEClient) apptest.SSEEvent {
	t.Helper()
	for {
		if ev := c.Next(t, wait); ev.Data != "" {
			return ev
		}
	}
}
