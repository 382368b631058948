package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Sizes of the poison test.
const (
	poisonGood  = 10_000 // good messages per run
	poisonRate  = 2_000  // good messages published per second, steadily: the latencies are the system's, not a backlog's
	poisonUsers = 4      // good messages go round-robin to these users, one WebSocket each
	poisonTick  = 10 * time.Millisecond
	poisonLimit = 5 // BRIDGE_DELIVERY_LIMIT's default, which the server runs with
	// poisonWarmUp messages go first, unmeasured, so the first measured run does not
	// pay for cold connections and a growing heap.
	poisonWarmUp = 1_000
)

// goodBody is a good message: its place in the test's sequence and when it was sent.
type goodBody struct {
	ReceiveUserID string `json:"receiveUserId"`
	Seq           int    `json:"seq"`
	Sent          int64  `json:"sent"` // Unix ns
}

// TestPoisonMessageAmongGoodOnes, with quorum and with classic queues on the real
// RabbitMQ and a Redis of the test's own: 1,000 good messages to warm up, 10,000
// measured, then 10,000 more with a poison message among them — one whose user's history key holds a string, so Redis
// refuses its dispatch every time while everyone else's goes through. The poison is
// dead-lettered after BRIDGE_DELIVERY_LIMIT+1 tries, by RabbitMQ (quorum) or by us
// (classic, counted by body hash: it has no message-id); every good message arrives
// exactly once; the good messages' latency percentiles of both runs are logged (see
// BENCHMARKS.md).
func TestPoisonMessageAmongGoodOnes(t *testing.T) {
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt, func(t *testing.T) {
			tp := apptest.NewTopology(t, "contract")
			dl := apptest.NewDeadLetter(t)
			rds := apptest.NewPrivateRedis(t)
			env := map[string]string{
				"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "REDIS_URL": rds.URL,
				"BRIDGE_QUEUE_TYPE": qt, "BRIDGE_DEAD_LETTER_EXCHANGE": dl.Exchange,
			}
			for k, v := range tp.Env {
				env[k] = v
			}
			s := apptest.Start(t, env)
			clients := make([]*apptest.WSClient, poisonUsers)
			for u := range clients {
				clients[u] = apptest.DialWS(t, s.WSURL(fmt.Sprintf("/ws/yxd/g%d", u)), "", nil)
			}
			apptest.Eventually(t, 10*time.Second, "clients registered", func() bool { return connCount(t, s) == poisonUsers })

			poison := plantPoison(t, tp, rds)
			runGood(t, tp, clients, 0, poisonWarmUp, nil)
			without := runGood(t, tp, clients, poisonWarmUp, poisonGood, nil)
			var poisonedAt time.Time
			with := runGood(t, tp, clients, poisonWarmUp+poisonGood, poisonGood, func(ch *amqp.Channel) {
				poisonedAt = time.Now()
				var id string
				if qt == "quorum" {
					id = "poison-1" // classic: none, so it is counted by its body's hash
				}
				if err := ch.Publish(tp.Exchange, "contract", false, false, amqp.Publishing{Body: poison, MessageId: id}); err != nil {
					t.Fatalf("publish the poison: %v", err)
				}
			})

			apptest.Eventually(t, 30*time.Second, "the poison dead-lettered", func() bool {
				return metric(t, s, "pushbridge_deliveries_dead_lettered_total") == 1
			})
			took := time.Since(poisonedAt)
			if got := metric(t, s, "pushbridge_deliveries_refused_total"); got != poisonLimit+1 {
				t.Errorf("Redis refused the poison %v times, want %d (tried limit+1 times)", got, poisonLimit+1)
			}
			var dead []string
			apptest.Eventually(t, 10*time.Second, "the poison in the dead-letter queue", func() bool {
				for _, d := range dl.Messages(t) {
					dead = append(dead, string(d.Body)+" / "+apptest.Reason(d))
				}
				return len(dead) > 0
			})
			reason := map[string]string{"quorum": "delivery_limit", "classic": "rejected"}[qt]
			if want := []string{string(poison) + " / " + reason}; !slices.Equal(dead, want) {
				t.Errorf("dead-lettered %q, want %q", dead, want)
			}
			// A broadcast after everything: each client's next frame, so none got an
			// extra copy of a good message.
			tp.Publish(t, "contract", []byte(`{"end":true}`), nil)
			for u, c := range clients {
				if f := c.Next(t, 10*time.Second); string(f.Data) != `{"end":true}` {
					t.Errorf("client g%d: got %s after its good messages, want the end broadcast", u, f.Data)
				}
			}
			// The end broadcast is acked after its hand-off, which may be after the
			// clients read it: the count is awaited, then must be exact.
			want := float64(poisonWarmUp + 2*poisonGood + 2)
			if acked := counted(t, "pushbridge_deliveries_acked_total", want, s); acked != want {
				t.Errorf("acked %v, want %v (the prime, the good ones, the end)", acked, want)
			}
			t.Logf("%s queues, %d good messages at %d/s to %d WebSockets: latency without a poison message p50 %v p99 %v max %v; with one p50 %v p99 %v max %v; the poison dead-lettered %v after it was published",
				qt, poisonGood, poisonRate, poisonUsers, pct(without, 50), pct(without, 99), without[len(without)-1],
				pct(with, 50), pct(with, 99), with[len(with)-1], took.Round(time.Millisecond))
			s.Stop(t)
			if n := apptest.QueueReady(t, tp.Queues[0]); n != 0 {
				t.Errorf("queue holds %d after the server stopped, want 0", n)
			}
		})
	}
}

// plantPoison makes a user whose messages Redis refuses: one message sets up the
// user's history, then every key naming the user that holds a stream is replaced by
// a string, so the next dispatch for the user fails with WRONGTYPE. Found by scanning,
// whatever the key layout. It returns the body of a message for that user.
func plantPoison(t *testing.T, tp *apptest.Topology, rds *apptest.PrivateRedis) []byte {
	t.Helper()
	user := apptest.Unique("poison")
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"`+user+`","prime":true}`), nil)
	ctx := context.Background()
	var streams []string
	apptest.Eventually(t, 10*time.Second, "the poison user's history in Redis", func() bool {
		keys, err := rds.Client.Keys(ctx, "*"+user+"*").Result()
		if err != nil {
			t.Fatalf("keys: %v", err)
		}
		for _, k := range keys {
			if typ, _ := rds.Client.Type(ctx, k).Result(); typ == "stream" {
				streams = append(streams, k)
			}
		}
		return len(streams) > 0
	})
	for _, k := range streams {
		if err := rds.Client.Set(ctx, k, "not a stream", 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	return []byte(`{"receiveUserId":"` + user + `","poison":true}`)
}

// runGood publishes n good messages, numbered from first, at poisonRate (before, when
// set, publishes on the same channel before the first), waits until every client got
// each of its messages exactly once, and returns their latencies, sorted.
func runGood(t *testing.T, tp *apptest.Topology, clients []*apptest.WSClient, first, n int, before func(*amqp.Channel)) []time.Duration {
	t.Helper()
	ch := apptest.OpenChannel(t)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	if before != nil {
		before(ch)
	}
	var confirms []*amqp.DeferredConfirmation
	tick := time.NewTicker(poisonTick)
	defer tick.Stop()
	perTick := int(poisonRate * poisonTick / time.Second)
	for i := 0; i < n; {
		<-tick.C
		for j := 0; j < perTick && i < n; j, i = j+1, i+1 {
			body, _ := json.Marshal(goodBody{ReceiveUserID: fmt.Sprintf("g%d", i%len(clients)), Seq: first + i, Sent: time.Now().UnixNano()})
			dc, err := ch.PublishWithDeferredConfirm(tp.Exchange, "contract", false, false, amqp.Publishing{Body: body, MessageId: fmt.Sprint("good-", first+i)})
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			confirms = append(confirms, dc)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: ok=%v err=%v", ok, err)
		}
	}

	var lat []time.Duration
	for u, c := range clients {
		seen := map[int]bool{}
		for range n / len(clients) {
			f := c.Next(t, 30*time.Second)
			var b goodBody
			if err := json.Unmarshal(f.Data, &b); err != nil || !strings.HasPrefix(b.ReceiveUserID, "g") {
				t.Fatalf("client g%d got %q, want a good message (%v)", u, f.Data, err)
			}
			if b.ReceiveUserID != fmt.Sprint("g", u) || b.Seq < first || b.Seq >= first+n || seen[b.Seq] {
				t.Fatalf("client g%d got %s: misrouted, from another run or a second time", u, f.Data)
			}
			seen[b.Seq] = true
			lat = append(lat, f.At.Sub(time.Unix(0, b.Sent)))
		}
	}
	slices.Sort(lat)
	return lat
}

// pct is the p-th percentile of sorted latencies.
func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*p/100)].Round(100 * time.Microsecond)
}
