package broker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/broker"
)

// keyBefore is an order key: the body up to its first '/', "" for "bcast/…".
func keyBefore(d broker.Delivery) (string, any) {
	k, _, _ := strings.Cut(string(d.Body), "/")
	if k == "bcast" {
		k = ""
	}
	return k, "decoded " + k
}

// TestRabbitLanesKeepEachKeysOrder: with 4 lanes, the deliveries of each order key
// (40 users and the broadcasts, 12 each, published interleaved) reach the handler in
// queue order, while batches of different lanes overlap: more than one and at most 4
// in flight at once. The handler sleeps a random moment per batch so the lanes
// interleave. What the order key decoded reaches the handler with each delivery.
func TestRabbitLanesKeepEachKeysOrder(t *testing.T) {
	const lanes, users, each = 4, 40, 12
	tp := apptest.NewTopology(t, "k")
	var (
		mu       sync.Mutex
		got      = map[string][]int{} // key: seq of each handled delivery, in handling order
		bad      []string
		inflight atomic.Int32
		most     atomic.Int32
		total    atomic.Int32
	)
	r := broker.NewRabbit(broker.RabbitConfig{
		URL: apptest.AMQPURL(), Exchange: tp.Exchange, Bindings: []broker.Binding{{Queue: tp.Queues[0], Key: "k"}},
		Prefetch: 64, Lanes: lanes, OrderKey: keyBefore, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	err := r.Start(context.Background(), func(_ context.Context, ds []broker.Delivery) []broker.Outcome {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		mu.Lock()
		for _, d := range ds {
			k, seq, _ := strings.Cut(string(d.Body), "/")
			var i int
			fmt.Sscan(seq, &i)
			got[k] = append(got[k], i)
			if want, _ := keyBefore(d); d.Decoded != "decoded "+want {
				bad = append(bad, fmt.Sprintf("%s decoded as %v", d.Body, d.Decoded))
			}
		}
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // so the lanes overlap
		total.Add(int32(len(ds)))
		return make([]broker.Outcome, len(ds))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	apptest.Eventually(t, 10*time.Second, "connected", r.Ready)

	var bodies [][]byte
	keys := []string{"bcast"}
	for u := range users {
		keys = append(keys, fmt.Sprint("user", u))
	}
	for i := range each {
		for _, k := range keys {
			bodies = append(bodies, fmt.Appendf(nil, "%s/%d", k, i))
		}
	}
	tp.PublishMany(t, "k", bodies, nil)
	apptest.Eventually(t, 30*time.Second, "every delivery handled", func() bool { return int(total.Load()) >= len(bodies) })
	r.StopConsuming(context.Background())
	r.Close()

	mu.Lock()
	defer mu.Unlock()
	want := fmt.Sprint(func() []int {
		s := make([]int, each)
		for i := range s {
			s[i] = i
		}
		return s
	}())
	for _, k := range keys {
		if s := fmt.Sprint(got[k]); s != want {
			t.Errorf("%s handled in the order %s, want %s", k, s, want)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d deliveries without what their order key decoded, first: %s", len(bad), bad[0])
	}
	if m := most.Load(); m < 2 || m > lanes {
		t.Errorf("at most %d batches in flight at once, want 2 to %d", m, lanes)
	}
	t.Logf("at most %d batches in flight", most.Load())
	if n := apptest.QueueReady(t, tp.Queues[0]); n != 0 {
		t.Errorf("queue holds %d after the stop, want 0", n)
	}
}

// TestRabbitLaneAckLeavesHeldDeliveryAlone: one lane's handler holds a delivery while
// the other lanes hand off the deliveries after it; their acks must not settle it
// (an ack with multiple set of a later tag would). When the connection is cut, the
// held delivery was never acked, so the broker hands it out again. The deliveries
// before it were acked by the watermark and are handled once.
func TestRabbitLaneAckLeavesHeldDeliveryAlone(t *testing.T) {
	const lanes = 4
	tp := apptest.NewTopology(t, "k")
	h := newHeldRig(t)
	var postCalls int // handler calls with deliveries published after the held one; under h's lock
	r := broker.NewRabbit(broker.RabbitConfig{
		URL: h.URL, Exchange: tp.Exchange, Bindings: []broker.Binding{{Queue: tp.Queues[0], Key: "k"}},
		// Above everything published: the deliveries after the held one stay
		// unacknowledged until it is settled, and must not stop the flow.
		Prefetch: 1000, Lanes: lanes, OrderKey: keyBefore, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	err := r.Start(context.Background(), func(_ context.Context, ds []broker.Delivery) []broker.Outcome {
		h.record(ds, func() {
			if slices.ContainsFunc(ds, func(d broker.Delivery) bool { return strings.HasPrefix(string(d.Body), "post") }) {
				postCalls++
			}
		})
		// The held delivery's first try waits until the connection is cut.
		h.hold(slices.ContainsFunc(ds, func(d broker.Delivery) bool { return string(d.Body) == "held/0" }))
		return make([]broker.Outcome, len(ds)) // all Ack
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	apptest.Eventually(t, 10*time.Second, "connected", r.Ready)
	count := func(prefix string) (n int) {
		h.locked(func(handled map[string][]bool) {
			for b := range handled {
				if strings.HasPrefix(b, prefix) {
					n++
				}
			}
		})
		return n
	}
	publish := func(prefix string, n int) (bodies [][]byte) {
		for i := range n {
			bodies = append(bodies, fmt.Appendf(nil, "%s%d/0", prefix, i)) // a key each
		}
		tp.PublishMany(t, "k", bodies, nil)
		return bodies
	}

	pre := publish("pre", 50)
	apptest.Eventually(t, 10*time.Second, "the deliveries before the held one handled", func() bool { return count("pre") == len(pre) })
	tp.Publish(t, "k", []byte("held/0"), nil)
	h.awaitHeld(t, "the held delivery")
	// Waves of deliveries after it, until the other lanes made more handler calls than
	// there are lanes: then one lane made two, so it had settled a batch of deliveries
	// after the held one before its second call. About a quarter of each wave shares
	// the held delivery's lane and waits behind it.
	var post [][]byte
	deadline := time.Now().Add(20 * time.Second)
	for w := 0; ; w++ {
		var calls int
		h.locked(func(map[string][]bool) { calls = postCalls })
		if calls > lanes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handler calls with deliveries after the held one, want more than %d", calls, lanes)
		}
		done := count("post")
		post = append(post, publish(fmt.Sprintf("post%d-", w), 30)...)
		apptest.Eventually(t, 10*time.Second, "part of a wave handled", func() bool { return count("post") >= done+10 })
	}

	h.Proxy.Down()
	h.Release()
	apptest.Eventually(t, 10*time.Second, "disconnected", func() bool { return !r.Ready() })
	// Every delivery after the held one that reached this consumer was unacknowledged
	// at the cut (the watermark stops below the held one), so it comes again, marked
	// redelivered: the tries each had before the reconnect tell which try to wait for.
	before := map[string]int{}
	h.locked(func(handled map[string][]bool) {
		for _, b := range post {
			before[string(b)] = len(handled[string(b)])
		}
	})
	h.Proxy.Up(t)
	apptest.Eventually(t, 20*time.Second, "the held delivery handed out again", func() bool { return len(h.tries("held/0")) == 2 })
	if got := h.tries("held/0"); !got[1] {
		t.Errorf("the held delivery's second try is not marked redelivered: %v", got)
	}
	apptest.Eventually(t, 20*time.Second, "every delivery after the held one handled since the reconnect", func() bool {
		all := true
		h.locked(func(handled map[string][]bool) {
			for _, b := range post {
				got, n := handled[string(b)], before[string(b)]
				if n == 0 && len(got) == 0 || n > 0 && !slices.Contains(got[n:], true) {
					all = false
					return
				}
			}
		})
		return all
	})
	r.StopConsuming(context.Background())
	r.Close()

	h.locked(func(handled map[string][]bool) {
		for _, b := range pre {
			if got := handled[string(b)]; len(got) != 1 {
				t.Errorf("%s, acked before the cut, handled %d times (redelivered: %v), want once", b, len(got), got)
			}
		}
		for _, b := range post {
			if got := handled[string(b)]; slices.Contains(got[1:], false) {
				t.Errorf("%s handled again without being marked redelivered: %v", b, got)
			}
		}
	})
	if n := apptest.QueueReady(t, tp.Queues[0]); n != 0 {
		t.Errorf("queue holds %d after the stop, want 0", n)
	}
}
