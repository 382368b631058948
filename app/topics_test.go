package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// topicServer consumes two routing keys, contract and transaction, so a subscription
// to one leaves the other out.
func topicServer(t *testing.T) (*apptest.Server, *apptest.Topology) {
	t.Helper()
	tp := apptest.NewTopology(t, "contract", "transaction")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL()}
	for k, v := range tp.Env {
		env[k] = v
	}
	return apptest.Start(t, env), tp
}

type topicFrame struct {
	Type       string          `json:"type"`
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"`
	Topics     []string        `json:"topics"`
	Error      string          `json:"error"`
}

func nextTopicFrame(t *testing.T, c *apptest.WSClient) topicFrame {
	t.Helper()
	var f topicFrame
	if err := json.Unmarshal(c.Next(t, wait).Data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// publishSeen publishes body on key for user u and returns once watch (a connection
// of u with no subscription) has it: it has reached u's connections by then.
func publishSeen(t *testing.T, tp *apptest.Topology, watch *apptest.WSClient, key, body string) {
	t.Helper()
	tp.Publish(t, key, []byte(body), nil)
	if f := nextTopicFrame(t, watch); f.Type != "message" || string(f.Data) != body {
		t.Fatalf("watcher got %+v, want the message %s", f, body)
	}
}

// TestSubscribeFrameNarrowsTheStream: after {"type":"subscribe","topics":["contract"]}
// a bridge.v1 connection gets only its contract messages; an unknown topic is an error
// frame and changes nothing; an empty list is everything again.
func TestSubscribeFrameNarrowsTheStream(t *testing.T) {
	s, tp := topicServer(t)
	c := apptest.DialWS(t, s.WSURL("/ws?user=u"), "bridge.v1", nil)
	watch := apptest.DialWS(t, s.WSURL("/ws?user=u"), "bridge.v1", nil)
	nextTopicFrame(t, c)     // welcome
	nextTopicFrame(t, watch) // welcome

	subscribe := func(topics string) topicFrame {
		if err := c.Conn.WriteMessage(1, []byte(`{"type":"subscribe","topics":`+topics+`}`)); err != nil {
			t.Fatal(err)
		}
		return nextTopicFrame(t, c)
	}
	if f := subscribe(`["contract"]`); f.Type != "subscribed" || strings.Join(f.Topics, ",") != "contract" {
		t.Fatalf("got %+v, want subscribed to contract", f)
	}
	if f := subscribe(`["contrakt"]`); f.Type != "error" || !strings.Contains(f.Error, `"contrakt"`) {
		t.Fatalf("got %+v, want an error naming the unknown topic", f)
	}

	publishSeen(t, tp, watch, "transaction", `{"receiveUserId":"u","n":1}`)
	publishSeen(t, tp, watch, "contract", `{"receiveUserId":"u","n":2}`)
	if f := nextTopicFrame(t, c); f.RoutingKey != "contract" || string(f.Data) != `{"receiveUserId":"u","n":2}` {
		t.Fatalf("subscribed connection got %+v, want only the contract message", f)
	}

	if f := subscribe(`[]`); f.Type != "subscribed" || len(f.Topics) != 0 {
		t.Fatalf("got %+v, want subscribed to everything", f)
	}
	publishSeen(t, tp, watch, "transaction", `{"receiveUserId":"u","n":3}`)
	if f := nextTopicFrame(t, c); f.RoutingKey != "transaction" {
		t.Fatalf("got %+v, want the transaction message after unsubscribing", f)
	}
}

// TestTopicsQueryOnEveryTransport: ?topics= on /ws (with a resume), /sse and /poll
// narrows the replay and the live stream alike, and a poll's cursor moves past what
// was left out; an unknown topic is 422 before anything is opened.
func TestTopicsQueryOnEveryTransport(t *testing.T) {
	s, tp := topicServer(t)
	start := poll(t, s, q("user", "u")).Cursor
	watch := apptest.DialWS(t, s.WSURL("/ws?user=u"), "bridge.v1", nil)
	nextTopicFrame(t, watch) // welcome
	sse := apptest.OpenSSE(t, s.URL+"/sse?user=u&topics=contract", nil)
	if ev := sse.NextEvent(t, wait); ev.Event != "welcome" {
		t.Fatalf("first event %+v, want welcome", ev)
	}

	publishSeen(t, tp, watch, "transaction", `{"receiveUserId":"u","n":1}`)
	publishSeen(t, tp, watch, "contract", `{"receiveUserId":"u","n":2}`)
	publishSeen(t, tp, watch, "transaction", `{"receiveUserId":"u","n":3}`)

	// Live on SSE.
	if ev := sse.NextEvent(t, wait); ev.Event != "" || ev.Data != `{"receiveUserId":"u","n":2}` {
		t.Fatalf("sse got %+v, want only the contract message", ev)
	}
	// Replayed on a WebSocket that resumes.
	ws := apptest.DialWS(t, s.WSURL("/ws?user=u&topics=contract&since="+start), "bridge.v1", nil)
	nextTopicFrame(t, ws) // welcome
	if f := nextTopicFrame(t, ws); f.RoutingKey != "contract" || string(f.Data) != `{"receiveUserId":"u","n":2}` {
		t.Fatalf("resumed ws got %+v, want only the contract message", f)
	}
	// Replayed on poll, whose cursor moves past the transaction message after it.
	a := poll(t, s, q("user", "u", "topics", "contract", "cursor", start))
	if len(a.Messages) != 1 || string(a.Messages[0].Data) != `{"receiveUserId":"u","n":2}` {
		t.Fatalf("poll got %+v, want only the contract message", a.Messages)
	}
	if b := poll(t, s, q("user", "u", "topics", "contract", "cursor", a.Cursor, "wait", "0")); len(b.Messages) != 0 || b.Cursor != a.Cursor {
		t.Fatalf("next poll got %+v (cursor %s), want nothing new at cursor %s", b.Messages, b.Cursor, a.Cursor)
	}
	all := poll(t, s, q("user", "u", "cursor", start))
	if len(all.Messages) != 3 || a.Cursor != all.Cursor {
		t.Fatalf("unsubscribed poll: %d messages, cursor %s; want 3 and the subscribed poll's cursor %s", len(all.Messages), all.Cursor, a.Cursor)
	}

	for _, path := range []string{"/sse", "/poll", "/ws"} {
		resp, err := http.Get(s.URL + path + "?user=u&topics=contract,nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%s with an unknown topic: %d, want 422", path, resp.StatusCode)
		}
	}
}
