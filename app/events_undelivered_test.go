package app_test

import (
	"bytes"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// An offline user's message: exactly one message.undelivered, the body byte for byte
// with the contract's headers, and the message is still in the history. An online
// user's message: none.
func TestUndeliveredOnlyForAnOfflineUser(t *testing.T) {
	tap := newEventsTap(t, "message.*") // the user's own user.online is not this test's business
	s, tp := rabbitServer(t, map[string]string{"BRIDGE_EVENTS_EXCHANGE": tap.Exchange})
	ws := apptest.DialWS(t, s.WSURL("/ws?user=on"), "", nil)
	apptest.Eventually(t, wait, "connected", func() bool { return connCount(t, s) == 1 })

	publishAs(t, tp, "on", []byte("for the online one"), "m-on", "c-on")
	if f := ws.Next(t, wait); string(f.Data) != "for the online one" {
		t.Fatalf("online user got %q", f.Data)
	}
	body := []byte("\x00\xff not JSON, \r\n bytes \xc3\x28 as they are")
	publishAs(t, tp, "off", body, "m-off", "c-off")

	d := tap.next(t, wait) // the online message, dispatched first, would be first
	if d.RoutingKey != "message.undelivered" || !bytes.Equal(d.Body, body) {
		t.Fatalf("event %s with body %q, want message.undelivered with %q", d.RoutingKey, d.Body, body)
	}
	h := d.Headers
	if h["x-user-id"] != "off" || h["x-original-routing-key"] != "contract" || h["x-message-cursor"] == "" ||
		d.MessageId != "m-off" || d.CorrelationId != "c-off" || d.DeliveryMode != 2 {
		t.Fatalf("headers %v, message-id %q, correlation-id %q, delivery mode %d", h, d.MessageId, d.CorrelationId, d.DeliveryMode)
	}

	// Still in the history: the user connecting now gets it, with the cursor named.
	a := poll(t, s, q("user", "off", "cursor", "0", "wait", "1s"))
	if len(a.Messages) != 1 || a.Messages[0].ID != h["x-message-cursor"] {
		t.Fatalf("poll replayed %+v, want the message with the event's cursor %v", a.Messages, h["x-message-cursor"])
	}

	// Exactly one: a later undelivered message is the next event.
	publishAs(t, tp, "gone", []byte("marker"), "m-2", "")
	if d := tap.next(t, wait); string(d.Body) != "marker" {
		t.Fatalf("next event %s %q, want the marker's message.undelivered", d.RoutingKey, d.Body)
	}
	tap.none(t)
}
