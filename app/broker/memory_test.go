package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestMemoryRoutesLikeADirectExchange(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "a", Key: "k"}, {Queue: "b", Key: "k"}, {Queue: "b", Key: "other"}}, 5, nil)
	got := make(chan Delivery, 16)
	if err := m.Start(context.Background(), each(func(d Delivery) Outcome { got <- d; return Ack })); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if err := m.Publish(context.Background(), Publishing{RoutingKey: "nowhere", Body: []byte("x")}); !errors.Is(err, ErrUnroutable) {
		t.Fatalf("unbound key: got %v, want ErrUnroutable", err)
	}
	if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte("both"), MessageID: "1"}); err != nil {
		t.Fatal(err)
	}
	queues := map[string]bool{}
	for range 2 {
		d := recv(t, got)
		if string(d.Body) != "both" || d.RoutingKey != "k" || d.MessageID != "1" {
			t.Fatalf("got %+v, want the message on key k", d)
		}
		queues[d.Queue] = true
	}
	if !queues["a"] || !queues["b"] {
		t.Fatalf("delivered from queues %v, want a and b (both bound to k)", queues)
	}
	select {
	case d := <-got:
		t.Fatalf("extra delivery %+v", d)
	default:
	}
}

// The consumer takes what is queued as one batch; what the handler requeues goes back
// to the front, in order, after a pause.
func TestMemoryBatchesAndRequeuesToTheFront(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}}, 5, nil)
	for i := range 3 { // queued before the consumer starts: one batch
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: fmt.Append(nil, i)}); err != nil {
			t.Fatal(err)
		}
	}
	batches := make(chan []Delivery, 4)
	calls := 0
	if err := m.Start(context.Background(), func(_ context.Context, ds []Delivery) []Outcome {
		calls++
		batches <- slices.Clone(ds)
		out := make([]Outcome, len(ds))
		for i, d := range ds {
			if calls == 1 && string(d.Body) != "0" {
				out[i] = Requeue // the first time, as if Redis failed after the first
			}
		}
		return out
	}); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bodies := func(ds []Delivery) (s []string) {
		for _, d := range ds {
			s = append(s, fmt.Sprintf("%s/%v", d.Body, d.Redelivered))
		}
		return s
	}
	first := recvBatch(t, batches)
	if got := fmt.Sprint(bodies(first)); got != "[0/false 1/false 2/false]" {
		t.Fatalf("first batch %s, want the three queued deliveries", got)
	}
	if first[0].Queue != "q" {
		t.Errorf("queue %q, want q", first[0].Queue)
	}
	start := time.Now()
	if got := fmt.Sprint(bodies(recvBatch(t, batches))); got != "[1/true 2/true]" {
		t.Fatalf("after the requeue: %s, want 1 and 2 redelivered, in order", got)
	}
	if waited := time.Since(start); waited < requeuePause/2 {
		t.Errorf("requeued deliveries came back after %v: no pause", waited)
	}
}

func TestMemoryStopFinishesTheBatchInHandAndRefusesPublishes(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}}, 5, nil)
	inHandler, finish, handled := make(chan struct{}), make(chan struct{}), make(chan string, 4)
	if err := m.Start(context.Background(), each(func(d Delivery) Outcome {
		close(inHandler)
		<-finish
		handled <- string(d.Body)
		return Ack
	})); err != nil {
		t.Fatal(err)
	}
	publish := func(b string) {
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("first")
	<-inHandler
	publish("second") // queued behind the batch in hand
	stopped := make(chan struct{})
	go func() { m.StopConsuming(context.Background()); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("StopConsuming returned while a delivery was being handled")
	case <-time.After(50 * time.Millisecond): // a window for a wrong early return to show
	}
	close(finish)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("StopConsuming did not return after the handler finished")
	}
	if got := <-handled; got != "first" || len(handled) != 0 {
		t.Fatalf("handled %q and %d more, want only the first (the rest dies with the process)", got, len(handled))
	}
	if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte("late")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish after stop: got %v, want ErrUnavailable", err)
	}
}

func TestMemoryQueueIsBounded(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}, {Queue: "r", Key: "k"}}, 5, nil)
	// Not started: nothing drains the queues.
	for i := range memQueueMax {
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte("x")}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte("x")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish to a full queue: got %v, want ErrUnavailable", err)
	}
	if n := m.queues["r"].len(); n != memQueueMax {
		t.Fatalf("queue r holds %d, want %d (a refused message goes to no queue)", n, memQueueMax)
	}
}

func recv(t *testing.T, ch <-chan Delivery) Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
	}
	return Delivery{}
}

// each makes a Handler of a function of one delivery.
func each(f func(Delivery) Outcome) Handler {
	return func(_ context.Context, ds []Delivery) []Outcome {
		out := make([]Outcome, len(ds))
		for i, d := range ds {
			out[i] = f(d)
		}
		return out
	}
}

func recvBatch(t *testing.T, ch <-chan []Delivery) []Delivery {
	t.Helper()
	select {
	case ds := <-ch:
		return ds
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
	}
	return nil
}

// A delivery whose hand-off keeps failing waits out its pause alone: what comes after
// it is handled meanwhile. Past the limit it is dropped and counted; a delivery the
// handler only retries (Redis down for everyone) never is.
func TestMemoryFailingDeliveryWaitsAloneAndIsGivenUp(t *testing.T) {
	const limit = 2
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}}, limit, nil)
	events := make(chan string, 64)
	retries := 0
	if err := m.Start(context.Background(), each(func(d Delivery) Outcome {
		events <- string(d.Body)
		switch string(d.Body) {
		case "poison":
			return Requeue
		case "outage":
			if retries++; retries <= limit+1 { // more retries than the limit allows requeues
				return Retry
			}
		}
		return Ack
	})); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	publish := func(b string) {
		t.Helper()
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("poison")
	if got := <-events; got != "poison" {
		t.Fatalf("first handled %q, want poison", got)
	}
	publish("a")
	publish("outage")
	publish("b")
	var order []string
	for len(order) < 3 {
		order = append(order, recvString(t, events))
	}
	if fmt.Sprint(order) != "[a outage b]" {
		t.Fatalf("after the poison's first try: %v, want a, outage and b before its second try (the pause held up the queue?)", order)
	}
	poison, outage := 1, 1
	for poison < limit+1 || outage < limit+2 {
		switch e := recvString(t, events); e {
		case "poison":
			poison++
		case "outage":
			outage++
		default:
			t.Fatalf("%q handled again", e)
		}
	}
	publish("after")
	for {
		e := recvString(t, events)
		if e == "after" {
			break
		}
		if e == "poison" {
			t.Fatalf("poison tried a %dth time, want %d tries (limit %d)", poison+1, limit+1, limit)
		}
	}
	if n := m.DeadLettered(); n != 1 {
		t.Errorf("DeadLettered %d, want 1 (the poison; the outage's retries never count)", n)
	}
}

func recvString(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("nothing handled within 5s")
	}
	return ""
}
