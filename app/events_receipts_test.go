package app_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// A message confirmed by two tabs on two instances, and by an SSE client through
// POST /api/ack, gives exactly one message.received naming the message's ids. Another
// user confirming that message's id gives nothing, and sees nothing of the receipt.
func TestReceiptOncePerUserAndMessage(t *testing.T) {
	tap := newEventsTap(t, "message.*") // user.online/offline are sent with Redis too
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_EVENTS_EXCHANGE": tap.Exchange}
	for k, v := range tp.Env {
		env[k] = v
	}
	for k, v := range apptest.NewRedis(t).Env {
		env[k] = v
	}
	s1, s2 := apptest.Start(t, env), apptest.Start(t, env)

	tab1 := apptest.DialWS(t, s1.WSURL("/ws?user=r"), "bridge.v1", nil)
	tab2 := apptest.DialWS(t, s2.WSURL("/ws?user=r"), "bridge.v1", nil)
	sse := apptest.OpenSSE(t, s2.URL+"/sse?user=r&protocol=bridge.v1", nil)
	other := apptest.DialWS(t, s1.WSURL("/ws?user=other"), "bridge.v1", nil)
	for _, c := range []*apptest.WSClient{tab1, tab2, other} {
		if f := v1Frame(t, c.Next(t, wait).Data); jsonString(t, f["type"]) != "welcome" {
			t.Fatalf("first frame %v, want welcome", f)
		}
	}
	publishAs(t, tp, "r", []byte(`{"n":1}`), "mid-r", "cid-r")
	var id string
	for _, c := range []*apptest.WSClient{tab1, tab2} {
		f := v1Frame(t, c.Next(t, wait).Data)
		id = jsonString(t, f["id"])
		if err := c.Conn.WriteMessage(1, []byte(`{"type":"ack","ids":["`+id+`"]}`)); err != nil {
			t.Fatal(err)
		}
	}
	for ev := sse.Next(t, wait); ; ev = sse.Next(t, wait) {
		if ev.ID == id {
			break
		}
	}
	if code, body := postAck(t, s2, "r", `{"ids":["`+id+`"]}`); code != http.StatusAccepted {
		t.Fatalf("POST /api/ack: %d %s", code, body)
	}
	ev := tap.nextJSON(t, wait)
	if ev.Type != "message.received" || ev.User != "r" || ev.ID != userPart(id) || ev.MessageID != "mid-r" || ev.CorrelationID != "cid-r" || ev.Instance == "" {
		t.Fatalf("event %+v, want message.received of %s for r with mid-r/cid-r", ev, id)
	}

	// Another user naming r's message: no receipt (it is not in their history).
	if err := other.Conn.WriteMessage(1, []byte(`{"type":"ack","ids":["`+id+`"]}`)); err != nil {
		t.Fatal(err)
	}
	if code, body := postAck(t, s1, "other", `{"ids":["`+id+`"]}`); code != http.StatusAccepted {
		t.Fatalf("POST /api/ack of another's id: %d %s, want 202 (ignored)", code, body)
	}
	// The marker: an undelivered message, emitted after all of the above was handled.
	publishAs(t, tp, "nobody", []byte("marker"), "m", "")
	if d := tap.next(t, wait); d.RoutingKey != "message.undelivered" || string(d.Body) != "marker" {
		t.Fatalf("next event %s %q, want only the marker: a second receipt came", d.RoutingKey, d.Body)
	}
	tap.none(t)
	// And the other user's connection heard nothing of r's receipt.
	select {
	case f := <-other.Frames:
		t.Fatalf("user other got %s", f.Data)
	default:
	}

	// Bad input: a clear error, on each route.
	for _, bad := range []string{`{"ids":[]}`, `{"ids":["not-a-cursor"]}`, `{"ids":"x"}`, `[`} {
		if code, body := postAck(t, s1, "r", bad); code/100 != 4 || !strings.Contains(body, "error") {
			t.Errorf("POST /api/ack %s: %d %s, want a 4xx with an error", bad, code, body)
		}
	}
	if err := tab1.Conn.WriteMessage(1, []byte(`{"type":"ack","ids":[""]}`)); err != nil {
		t.Fatal(err)
	}
	if f := v1Frame(t, tab1.Next(t, wait).Data); jsonString(t, f["type"]) != "error" {
		t.Fatalf("answer to a bad ack frame: %v, want an error frame", f)
	}
}

func postAck(t *testing.T, s *apptest.Server, user, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(s.URL+"/api/ack?user="+user, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// userPart is the user-stream position of a cursor (<user epoch>-<seq>.<bcast epoch>-<seq>):
// what receipts and events name a targeted message by.
func userPart(cursor string) string { u, _, _ := strings.Cut(cursor, "."); return u }
