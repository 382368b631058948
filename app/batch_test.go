package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// batchRouter is one instance's Consumer, on the in-memory backend or on the real
// Redis (rds set), with a connection of user "1" attached to its hub.
type batchRouter struct {
	r     *app.Consumer
	conn  *bodyConn
	conn2 *bodyConn // of user "2"
	rds   *apptest.Redis
}

func newBatchRouter(t *testing.T, redis bool) *batchRouter {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	br := &batchRouter{conn: &bodyConn{user: "1"}, conn2: &bodyConn{user: "2"}}
	var hub *presence.Hub
	if !redis {
		var disp presence.Dispatcher
		hub, disp = apptest.LocalHub(t, "A", 100)
		br.r = app.NewConsumer(app.ConsumerConfig{Dispatcher: disp, MaxBytes: 1 << 16, Log: log})
	} else {
		br.rds = apptest.NewRedis(t)
		ro := presence.RedisOptions{Prefix: br.rds.Prefix, Instance: "A"}
		hub = presence.NewHub(presence.HubConfig{
			Instance: "A", History: presence.NewRedisHistory(br.rds.Client, ro), Directory: presence.NewRedisDirectory(br.rds.Client, ro), Log: log,
		})
		br.r = app.NewConsumer(app.ConsumerConfig{Dispatcher: presence.NewRedisDispatcher(br.rds.Client, ro), MaxBytes: 1 << 16, Log: log})
		go func() { _ = hub.Listen(ctx, presence.NewRedisRelay(br.rds.Client, ro, log)) }()
		<-hub.Listening()
	}
	for _, c := range []*bodyConn{br.conn, br.conn2} {
		if err := hub.Attach(ctx, c, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	return br
}

// bodyConn is a connection that records the bodies and ids it is sent.
type bodyConn struct {
	user   string
	mu     sync.Mutex
	bodies []string
	ids    []string
}

func (c *bodyConn) User() string                         { return c.user }
func (c *bodyConn) Transport() string                    { return "test" }
func (c *bodyConn) Since() time.Time                     { return time.Time{} }
func (c *bodyConn) Drain(context.Context, time.Duration) {}
func (c *bodyConn) Replay(*presence.Replay)              {}
func (c *bodyConn) Room() (int, int)                     { return 1 << 30, 1 << 30 } // records everything at once
func (c *bodyConn) WhenRoom(fn func())                   { go fn() }
func (c *bodyConn) Send(ds []presence.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range ds {
		m := d.M
		c.bodies, c.ids = append(c.bodies, string(m.Body)), append(c.ids, m.Pos().Epoch+"-"+strconv.FormatUint(m.Seq, 10))
	}
}

// wantBodies waits for the connection to hold as many messages as want and checks
// that they are want, in order.
func (c *bodyConn) wantBodies(t *testing.T, want ...string) {
	t.Helper()
	var got, ids []string
	apptest.Eventually(t, 10*time.Second, "the connection got every dispatched message", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		got, ids = slices.Clone(c.bodies), slices.Clone(c.ids)
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		t.Fatalf("the connection got %q (ids %v), want %q", got, ids, want)
	}
}

// TestHandleBatchRejectsOnlyTheUnusable: in one batch, unusable bodies are rejected on
// their own; the rest is dispatched in delivery order and acked, a redelivery (same
// message id) without a second dispatch.
func TestHandleBatchRejectsOnlyTheUnusable(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[redis], func(t *testing.T) {
			br := newBatchRouter(t, redis)
			ds := []broker.Delivery{
				{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","n":1}`), MessageID: "m1"},
				{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1",`), MessageID: "bad"},
				{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","n":2}`), MessageID: "m2"},
				{Queue: "q", RoutingKey: "contract", Body: nil, MessageID: "empty"},
				{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","n":1}`), MessageID: "m1", Redelivered: true},
				{Queue: "q", RoutingKey: "contract", Body: []byte(`plain for 1`), Headers: map[string]any{"x-user-id": "1"}},
			}
			got := br.r.Handle(context.Background(), ds)
			want := []broker.Outcome{broker.Ack, broker.Reject, broker.Ack, broker.Reject, broker.Ack, broker.Ack}
			if !slices.Equal(got, want) {
				t.Fatalf("outcomes %v, want %v (ack, reject, ack, reject, ack, ack)", got, want)
			}
			if b, c, rj, d := br.r.Batches.Load(), br.r.Consumed.Load(), br.r.Rejected.Load(), br.r.Duplicates.Load(); b != 1 || c != 4 || rj != 2 || d != 1 {
				t.Errorf("batches %d acked %d rejected %d duplicates %d, want 1, 4, 2, 1", b, c, rj, d)
			}
			br.conn.wantBodies(t, `{"receiveUserId":"1","n":1}`, `{"receiveUserId":"1","n":2}`, "plain for 1")
		})
	}
}

// TestHandleBatchRequeuesWhatRedisRefused: a dispatch Redis refuses in the middle of
// a batch (here the user's meta key holds a string) requeues that delivery alone;
// the others are dispatched, in order, and acked.
func TestHandleBatchRequeuesWhatRedisRefused(t *testing.T) {
	br := newBatchRouter(t, true)
	if err := br.rds.Client.Set(context.Background(), br.rds.Prefix+"{u:broken}:meta", "not a stream", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	ds := []broker.Delivery{
		{Queue: "q", Body: []byte(`{"receiveUserId":"1","n":1}`)},
		{Queue: "q", Body: []byte(`{"receiveUserId":"broken"}`)},
		{Queue: "q", Body: []byte(`{"receiveUserId":"1","n":2}`)},
	}
	got := br.r.Handle(context.Background(), ds)
	if want := []broker.Outcome{broker.Ack, broker.Requeue, broker.Ack}; !slices.Equal(got, want) {
		t.Fatalf("outcomes %v, want %v (ack, requeue, ack)", got, want)
	}
	if q, c := br.r.Requeued.Load(), br.r.Consumed.Load(); q != 1 || c != 2 {
		t.Errorf("requeued %d acked %d, want 1 and 2", q, c)
	}
	br.conn.wantBodies(t, `{"receiveUserId":"1","n":1}`, `{"receiveUserId":"1","n":2}`)
}

// TestRedisOutageRequeuesBatches runs a real RabbitMQ queue into a Redis that goes
// away. While it is away the unusable body is rejected at once and the others are
// requeued, a batch at a time after a pause (no hot loop); the deliveries wait in the
// consumer meanwhile and go out in batches when Redis returns, every good one exactly
// once, and none is left unacked.
func TestRedisOutageRequeuesBatches(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewRedis(t)
	u, err := url.Parse(apptest.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := apptest.NewProxy(t, u.Host)
	u.Host = proxy.Addr
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "REDIS_URL": u.String(), "BRIDGE_REDIS_PREFIX": rds.Prefix}
	for k, v := range tp.Env {
		env[k] = v
	}
	s := apptest.Start(t, env)
	c := apptest.DialWS(t, s.WSURL("/ws/yxd/1"), "", nil)
	apptest.Eventually(t, 5*time.Second, "client registered", func() bool { return connCount(t, s) == 1 })
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"1","n":"before"}`), nil)
	if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"1","n":"before"}` {
		t.Fatalf("client got %q before the outage", f.Data)
	}

	proxy.Down()
	start := time.Now()
	const n = 20
	var bodies [][]byte
	want := map[string]bool{}
	for i := range n {
		if i == n/2 {
			bodies = append(bodies, []byte(`{"receiveUserId":"1",`)) // unusable
			continue
		}
		b := fmt.Sprintf(`{"receiveUserId":"1","n":%d}`, i)
		bodies, want[b] = append(bodies, []byte(b)), true
	}
	tp.PublishMany(t, "contract", bodies, nil)
	apptest.Eventually(t, 20*time.Second, "the unusable body rejected and every other requeued", func() bool {
		return metric(t, s, "pushbridge_deliveries_rejected_total") == 1 &&
			metric(t, s, "pushbridge_deliveries_requeued_total") >= n-1
	})
	if got := metric(t, s, "pushbridge_deliveries_acked_total"); got != 1 {
		t.Fatalf("acked %v while Redis was away, want 1 (only the message before)", got)
	}

	proxy.Up(t)
	got := map[string]int{}
	for range n - 1 {
		got[string(c.Next(t, 20*time.Second).Data)]++
	}
	for b, k := range got {
		if !want[b] || k != 1 {
			t.Errorf("client got %q %d times", b, k)
		}
	}
	if len(got) != n-1 {
		t.Errorf("client got %d distinct messages, want %d", len(got), n-1)
	}
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"1","n":"after"}`), nil)
	if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"1","n":"after"}` {
		t.Fatalf("client got %q, want the message after (a duplicate came first?)", f.Data)
	}
	elapsed := time.Since(start)

	requeued := metric(t, s, "pushbridge_deliveries_requeued_total")
	// Each delivery goes back at most once per pause (1s); a hot loop would go far over.
	if limit := float64(n-1) * (elapsed.Seconds() + 2); requeued > limit {
		t.Errorf("requeued %v times in %v, over %v: no pause between tries?", requeued, elapsed, limit)
	}
	handled := requeued + metric(t, s, "pushbridge_deliveries_acked_total") + metric(t, s, "pushbridge_deliveries_rejected_total")
	batches := metric(t, s, "pushbridge_delivery_batches_total")
	t.Logf("%v deliveries handled in %v batches, %v requeued, in %v", handled, batches, requeued, elapsed)
	if batches >= handled {
		t.Errorf("%v batches for %v deliveries handled: the deliveries that waited out the pause were not batched", batches, handled)
	}
	s.Stop(t)
	if left := apptest.QueueReady(t, tp.Queues[0]); left != 0 {
		t.Errorf("queue holds %d messages after the server stopped, want 0 (a delivery was not acked)", left)
	}
}

// TestDedupeKeys: a delivery's dedupe key is its queue, message-id and body, so one
// event id fanned out to two users reaches both; without a message-id, a delivery the
// broker marks redelivered is recognised by routing key and body, while two equal
// messages published on purpose (neither redelivered) both arrive (issue 12, item 3).
func TestDedupeKeys(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[redis], func(t *testing.T) {
			br := newBatchRouter(t, redis)
			handle := func(ds ...broker.Delivery) {
				t.Helper()
				for i, o := range br.r.Handle(context.Background(), ds) {
					if o != broker.Ack {
						t.Fatalf("delivery %d: outcome %v, want ack", i, o)
					}
				}
			}
			handle(
				broker.Delivery{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","event":"e1"}`), MessageID: "event-1"},
				broker.Delivery{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"2","event":"e1"}`), MessageID: "event-1"},
			)
			plain := broker.Delivery{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","text":"same"}`)}
			handle(plain)
			handle(plain) // published twice on purpose: both arrive
			again := plain
			again.Redelivered = true
			handle(again) // a redelivery of the second: not delivered again
			handle(broker.Delivery{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","event":"e1"}`), MessageID: "event-1", Redelivered: true})
			handle(broker.Delivery{Queue: "q", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"1","end":true}`)})
			if d := br.r.Duplicates.Load(); d != 2 {
				t.Errorf("duplicates %d, want 2 (the redelivery without an id, and event-1 to user 1 again)", d)
			}
			br.conn2.wantBodies(t, `{"receiveUserId":"2","event":"e1"}`)
			br.conn.wantBodies(t, `{"receiveUserId":"1","event":"e1"}`, string(plain.Body), string(plain.Body), `{"receiveUserId":"1","end":true}`)
		})
	}
}
