package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// fakeBroker takes publishes while up and refuses them (ErrUnavailable) while down.
type fakeBroker struct {
	mu   sync.Mutex
	down bool
	got  []broker.Publishing
}

func (f *fakeBroker) publish(_ context.Context, ps []broker.Publishing) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(ps))
	for i, p := range ps {
		if f.down {
			errs[i] = broker.ErrUnavailable
			continue
		}
		f.got = append(f.got, p)
	}
	return errs
}

func (f *fakeBroker) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *fakeBroker) bodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.got {
		out = append(out, p.Headers[HeaderUserID].(string))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for an event
	}
}

// Events emitted while the broker is down wait in the outbox and go, in order and
// each once, when it is back; the failed attempts are counted as retries.
func TestOutboxRetriesInOrderUntilTheBrokerTakesThem(t *testing.T) {
	fb := &fakeBroker{down: true}
	o := newOutbox("i1", fb.publish, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go o.run(ctx)
	defer func() { cancel(); <-o.done }()

	var want []string
	for i := range 200 {
		u := "u" + string(rune('a'+i%26)) + time.Duration(i).String()
		want = append(want, u)
		o.Emit(presence.Event{Type: presence.EventOnline, User: u, At: time.Now(), Transport: "ws"})
	}
	waitFor(t, "a failed attempt", func() bool { return value(o.retried.WithLabelValues(presence.EventOnline)) > 0 })
	if d := o.depth(); d != 200 {
		t.Fatalf("outbox holds %d while the broker is down, want 200", d)
	}
	fb.set(false)
	waitFor(t, "the outbox to empty", func() bool { return o.depth() == 0 })
	got := fb.bodies()
	if len(got) != len(want) {
		t.Fatalf("published %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d is for %s, want %s (out of order or twice)", i, got[i], want[i])
		}
	}
	if n := value(o.published.WithLabelValues(presence.EventOnline)); n != 200 {
		t.Errorf("published counter %v, want 200", n)
	}
}

// A full outbox drops what does not fit and counts it; a stop with events still
// pending counts them as dropped too.
func TestOutboxOverflowAndShutdownAreCounted(t *testing.T) {
	fb := &fakeBroker{down: true}
	o := newOutbox("i1", fb.publish, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range outboxMax + 7 {
		o.Emit(presence.Event{Type: presence.EventOffline, User: "u", At: time.Now()})
	}
	if n := value(o.dropped.WithLabelValues(presence.EventOffline)); n != 7 {
		t.Fatalf("dropped %v on overflow, want 7", n)
	}
	if d := o.depth(); d != outboxMax {
		t.Fatalf("depth %d, want %d", d, outboxMax)
	}
	close(o.done) // run never started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	o.flush(ctx)
	if n := value(o.dropped.WithLabelValues(presence.EventOffline)); n != outboxMax+7 {
		t.Fatalf("dropped %v after a stop with the broker down, want %d", n, outboxMax+7)
	}
}

func TestEventEncoding(t *testing.T) {
	o := newOutbox("inst-1", nil, slog.Default())
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("x", 3600))
	p := o.encode(presence.Event{Type: presence.EventOnline, User: "u1", At: at, Transport: "sse"})
	var b map[string]string
	if err := json.Unmarshal(p.Body, &b); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "user.online", "user": "u1", "instance": "inst-1", "at": "2026-01-02T02:04:05.678Z", "transport": "sse"}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("%s = %q, want %q", k, b[k], v)
		}
	}
	if p.RoutingKey != "user.online" || p.Headers[HeaderUserID] != "u1" || p.MessageID == "" {
		t.Errorf("routing key %q, x-user-id %v, message-id %q", p.RoutingKey, p.Headers[HeaderUserID], p.MessageID)
	}

	m := &presence.Message{ID: "42", UserID: "u2", RoutingKey: "contract", Body: []byte("\x00not json\xff"), MessageID: "m-1", CorrelationID: "c-1"}
	p = o.encode(presence.Event{Type: presence.EventUndelivered, User: "u2", At: at, Message: m})
	if string(p.Body) != string(m.Body) || p.MessageID != "m-1" || p.CorrelationID != "c-1" ||
		p.Headers[HeaderOriginalRoutingKey] != "contract" || p.Headers[HeaderMessageCursor] != "42" || p.Headers[HeaderUserID] != "u2" {
		t.Errorf("undelivered: %+v", p)
	}
	p = o.encode(presence.Event{Type: presence.EventReceived, User: "u2", At: at, Message: m})
	if err := json.Unmarshal(p.Body, &b); err != nil {
		t.Fatal(err)
	}
	if b["id"] != "42" || b["messageId"] != "m-1" || b["correlationId"] != "c-1" || b["type"] != "message.received" {
		t.Errorf("received body %s", p.Body)
	}
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
