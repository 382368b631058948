package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// RabbitMQ unreachable while events are emitted (the test's own connection cut at a
// TCP proxy): they wait in the outbox and are published after the reconnect, each
// once. The events are memory mode's user.online / user.offline, with the grace: two
// tabs of one user make one user.online, closing one makes nothing.
func TestEventsPendingAcrossABrokerCutArePublishedOnce(t *testing.T) {
	tap := newEventsTap(t)
	proxy, amqpURL := apptest.AMQPProxy(t)
	s, _ := rabbitServer(t, map[string]string{
		"AMQP_URL": amqpURL, "BRIDGE_EVENTS_EXCHANGE": tap.Exchange, "BRIDGE_OFFLINE_GRACE": "200ms",
	})
	apptest.Eventually(t, wait, "broker up", func() bool { return metric(t, s, "pushbridge_broker_up") == 1 })

	proxy.Down()
	apptest.Eventually(t, wait, "broker down", func() bool { return metric(t, s, "pushbridge_broker_up") == 0 })
	const users = 10
	want := map[string]bool{}
	conns := make([]*apptest.WSClient, users)
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		conns[i] = apptest.DialWS(t, s.WSURL("/ws?user="+u), "", nil)
		want["user.online "+u] = true
	}
	second := apptest.DialWS(t, s.WSURL("/ws?user=u0"), "", nil) // a second tab: no second event
	apptest.Eventually(t, wait, "connected", func() bool { return connCount(t, s) == users+1 })
	second.Conn.Close()
	for i := range users / 2 {
		conns[i].Conn.Close()
		want[fmt.Sprintf("user.offline u%d", i)] = true
	}
	// All of them in the outbox: none published while the broker was cut off.
	apptest.Eventually(t, wait, "events pending", func() bool {
		return metric(t, s, "pushbridge_events_outbox") == float64(len(want))
	})

	proxy.Up(t)
	online := map[string]bool{}
	for range len(want) {
		ev := tap.nextJSON(t, 30*time.Second)
		k := ev.Type + " " + ev.User
		if !want[k] {
			t.Fatalf("event %s: not expected, or twice", k)
		}
		delete(want, k)
		if ev.Type == "user.online" {
			online[ev.User] = true
			if ev.Transport != "ws" {
				t.Errorf("user.online of %s: transport %q, want ws", ev.User, ev.Transport)
			}
		} else if !online[ev.User] {
			t.Errorf("user.offline of %s before its user.online", ev.User)
		}
	}
	// None twice: the next event is one emitted now, behind anything left in the outbox.
	apptest.DialWS(t, s.WSURL("/ws?user=last"), "", nil)
	if ev := tap.nextJSON(t, wait); ev.Type != "user.online" || ev.User != "last" {
		t.Fatalf("after the pending events: %+v, want user.online of last (something came twice)", ev)
	}
	if n := metric(t, s, `pushbridge_events_retried_total{type="user.online"}`); n < 1 {
		t.Errorf("retried counter %v, want the failed attempts counted", n)
	}
}
