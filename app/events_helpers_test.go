package app_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// eventsTap is a test's own events exchange with a queue that takes every event, as a
// backend consumer would bind one.
type eventsTap struct {
	Exchange string
	got      <-chan amqp.Delivery
}

// newEventsTap declares a unique events exchange (as the server will: durable topic)
// and a queue bound to it with each of keys ("#" when none), deleted when the test ends.
func newEventsTap(t *testing.T, keys ...string) *eventsTap {
	t.Helper()
	x, got := apptest.EventsQueue(t, "pbtest_events", keys...)
	return &eventsTap{Exchange: x, got: got}
}

// event is a decoded JSON event body.
type event struct {
	Type, User, Instance, At, Transport, ID, MessageID, CorrelationID string
}

// next returns the next event within timeout, or fails.
func (e *eventsTap) next(t *testing.T, timeout time.Duration) amqp.Delivery {
	t.Helper()
	select {
	case d, ok := <-e.got:
		if !ok {
			t.Fatal("events consumer ended")
		}
		return d
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
	}
	return amqp.Delivery{}
}

// nextJSON is next, decoded, checked to be named by its routing key.
func (e *eventsTap) nextJSON(t *testing.T, timeout time.Duration) event {
	t.Helper()
	d := e.next(t, timeout)
	var ev event
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		t.Fatalf("event %s: body %q is not JSON: %v", d.RoutingKey, d.Body, err)
	}
	if ev.Type != d.RoutingKey || d.Headers["x-user-id"] != ev.User {
		t.Fatalf("event type %q, routing key %q, x-user-id %v, user %q: want them to agree", ev.Type, d.RoutingKey, d.Headers["x-user-id"], ev.User)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", ev.At); err != nil {
		t.Errorf("at %q is not RFC 3339 with milliseconds", ev.At)
	}
	return ev
}

// none checks that no event is waiting. Call it after an event that was emitted
// after whatever must not have caused one, so that one would have arrived first.
func (e *eventsTap) none(t *testing.T) {
	t.Helper()
	select {
	case d := <-e.got:
		t.Fatalf("unexpected event %s: %s", d.RoutingKey, d.Body)
	default:
	}
}

// publishAs publishes body to the topology with an AMQP message-id and
// correlation-id, recipient in header x-user-id, and waits for the confirm.
func publishAs(t *testing.T, tp *apptest.Topology, user string, body []byte, mid, cid string) {
	t.Helper()
	ch := apptest.OpenChannel(t)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm(tp.Exchange, "contract", false, false, amqp.Publishing{
		Body: body, MessageId: mid, CorrelationId: cid, Headers: amqp.Table{"x-user-id": user},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ok, err := dc.WaitContext(ctx); !ok || err != nil {
		t.Fatalf("publish not confirmed: %v %v", ok, err)
	}
}
