package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemoryRoutesLikeADirectExchange(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "a", Key: "k"}, {Queue: "b", Key: "k"}, {Queue: "b", Key: "other"}})
	got := make(chan Delivery, 16)
	if err := m.Start(context.Background(), func(_ context.Context, d Delivery) Outcome { got <- d; return Ack }); err != nil {
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

func TestMemoryKeepsOrderAndRequeuesToTheFront(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}})
	got := make(chan Delivery, 16)
	failedOnce := false
	release := make(chan struct{})
	if err := m.Start(context.Background(), func(_ context.Context, d Delivery) Outcome {
		<-release
		if string(d.Body) == "1" && !failedOnce {
			failedOnce = true
			return Requeue
		}
		got <- d
		return Ack
	}); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 3 {
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: fmt.Append(nil, i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	for i := range 3 {
		d := recv(t, got)
		if string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: got body %q, want %d (order kept across a requeue)", i, d.Body, i)
		}
		if d.Redelivered != (i == 1) {
			t.Errorf("delivery %d: Redelivered = %v", i, d.Redelivered)
		}
	}
}

func TestMemoryStopFinishesTheDeliveryInHandAndRefusesPublishes(t *testing.T) {
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}})
	inHandler, finish, handled := make(chan struct{}), make(chan struct{}), make(chan string, 4)
	if err := m.Start(context.Background(), func(_ context.Context, d Delivery) Outcome {
		close(inHandler)
		<-finish
		handled <- string(d.Body)
		return Ack
	}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"first", "second"} {
		if err := m.Publish(context.Background(), Publishing{RoutingKey: "k", Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	<-inHandler
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
	m := NewMemory([]Binding{{Queue: "q", Key: "k"}, {Queue: "r", Key: "k"}})
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
