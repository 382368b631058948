package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// presenceTTL is the test's BRIDGE_PRESENCE_TTL: how long a crashed instance may
// linger in presence.
const presenceTTL = 2 * time.Second

// expiryGrace is how long past the TTL the test gives the check itself (an HTTP round
// trip on shared CPUs); Redis expires the keys on time.
const expiryGrace = time.Second

// TestKillOneInstance: kill -9 of one of three instances while messages flow. Its
// tabs reconnect with their cursor to the others and end with every message exactly
// once; the dead instance leaves /api/instances and every user's presence within
// BRIDGE_PRESENCE_TTL, with nobody cleaning up.
func TestKillOneInstance(t *testing.T) { killOneInstance(t, testRedisEnv(t)) }

// killOneInstance runs TestKillOneInstance on the Redis of redisEnv.
func killOneInstance(t *testing.T, redisEnv map[string]string) {
	const users, perUser, batches = 30, 100, 6
	env, tp := clusterEnvOn(t, redisEnv, map[string]string{"BRIDGE_PRESENCE_TTL": presenceTTL.String(), "BRIDGE_SEND_QUEUE": "4096"})
	ps := startCluster(t, 3, env)
	dead, alive := ps[0], ps[1:]
	tabs := make([]*tab, users)
	for i := range tabs {
		tabs[i] = openTab(fmt.Sprintf("k%d", i))
		if err := tabs[i].connect(ps[i%len(ps)]); err != nil {
			t.Fatal(err)
		}
	}
	waitUsers(t, alive[0], users)
	tabs[0].waitUntil(t, 5*time.Second, "its welcome", func(tb *tab) bool { return tb.instance != "" })
	deadID := tabs[0].instance

	// The dead instance's tabs come back, with their cursor, to the others.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, tb := range tabs {
		if i%len(ps) == 0 {
			go reconnect(ctx, tb, alive, i)
		}
	}

	pub := newPublisher(t, tp)
	var all [][]byte
	for j := range users * perUser {
		all = append(all, targeted(fmt.Sprintf("k%d", j%users), j/users))
	}
	per := len(all) / batches
	pub.publish(t, "contract", all[:2*per])
	dead.kill(t) // while the first batches are still being consumed and delivered
	killed := time.Now()
	rest := make(chan error, 1)
	go func() { rest <- pub.send("contract", all[2*per:]) }()

	apptest.Eventually(t, presenceTTL+expiryGrace-time.Since(killed), "the dead instance gone from presence", func() bool {
		var ia struct{ Instances []struct{ ID string } }
		if err := apptest.GetJSON(alive[0].URL+"/api/instances", apiKey, &ia); err != nil {
			t.Fatal(err)
		}
		var up struct{ Connections []struct{ Instance string } }
		if err := apptest.GetJSON(alive[0].URL+"/api/presence/"+tabs[0].user, apiKey, &up); err != nil {
			t.Fatal(err)
		}
		gone := !slices.ContainsFunc(ia.Instances, func(x struct{ ID string }) bool { return x.ID == deadID })
		return gone && len(ia.Instances) == 2 && !slices.ContainsFunc(up.Connections, func(x struct{ Instance string }) bool { return x.Instance == deadID })
	})
	t.Logf("dead instance gone from presence %s after the kill (TTL %s)", time.Since(killed).Round(time.Millisecond), presenceTTL)

	if err := <-rest; err != nil {
		t.Fatal(err)
	}
	for _, tb := range tabs {
		tb.waitUntil(t, deliveryTimeout, "all its messages", func(tb *tab) bool { return len(tb.seqs) >= perUser })
	}
	sendFence(t, pub, tabs)
	var dups float64
	for _, p := range alive {
		dups += metric(t, p, "pushbridge_deliveries_duplicate_total")
	}
	t.Logf("redeliveries of messages the dead instance had dispatched, acked without a second dispatch: %v", dups)
	for i, tb := range tabs {
		tb.check(t, perUser, 0)
		if i%len(ps) == 0 {
			tb.mu.Lock()
			if tb.resumes == 0 || tb.instance == deadID {
				t.Errorf("tab of %s: resumed %d times, now on %s; want a whole resume on another instance", tb.user, tb.resumes, tb.instance)
			}
			tb.mu.Unlock()
		}
	}
}

// reconnect waits for tb's connection to end and opens it again on one of ps (from
// the i-th on), resuming after its last id, as bridge.js does; it returns once
// reconnected or when ctx ends.
func reconnect(ctx context.Context, tb *tab, ps []*proc, i int) {
	tb.mu.Lock()
	ended := tb.ended
	tb.mu.Unlock()
	select {
	case <-ended:
	case <-ctx.Done():
		return
	}
	retry := time.NewTicker(100 * time.Millisecond) // a refused dial is tried again on the next instance
	defer retry.Stop()
	for ; ; i++ {
		if tb.connect(ps[i%len(ps)]) == nil {
			return
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return
		}
	}
}

// metric reads one unlabelled metric from p's /metrics.
func metric(t *testing.T, p *proc, name string) float64 {
	t.Helper()
	resp, err := apptest.Get(p.URL+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(resp.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found on %s", name, p.Name)
	return 0
}

// TestKillBeforeFirstMessage: a tab whose first connection dies before any message
// reached it reconnects with the cursor its welcome gave it, and gets what was
// published while it was away — it has no message id to resume from, and the
// welcome's cursor is the point it started at.
func TestKillBeforeFirstMessage(t *testing.T) { killBeforeFirstMessage(t, testRedisEnv(t)) }

// killBeforeFirstMessage runs TestKillBeforeFirstMessage on the Redis of redisEnv.
func killBeforeFirstMessage(t *testing.T, redisEnv map[string]string) {
	const n = 20
	env, tp := clusterEnvOn(t, redisEnv, map[string]string{"BRIDGE_PRESENCE_TTL": presenceTTL.String()})
	ps := startCluster(t, 2, env)
	dead, alive := ps[0], ps[1]
	tb := openTab("early")
	if err := tb.connect(dead); err != nil {
		t.Fatal(err)
	}
	tb.waitUntil(t, 5*time.Second, "its welcome", func(tb *tab) bool { return tb.instance != "" })
	tb.mu.Lock()
	start, ended := tb.last, tb.ended
	tb.mu.Unlock()
	if start == "" {
		t.Fatal("the welcome carried no cursor")
	}
	dead.kill(t)
	<-ended

	before := metric(t, alive, "pushbridge_deliveries_acked_total")
	pub := newPublisher(t, tp)
	var bodies [][]byte
	for i := range n {
		bodies = append(bodies, targeted(tb.user, i))
	}
	pub.publish(t, "contract", bodies)
	// Acked means recorded in the history: all n are there before the tab comes back.
	apptest.Eventually(t, 20*time.Second, "the messages consumed by the live instance", func() bool {
		return metric(t, alive, "pushbridge_deliveries_acked_total")-before >= n
	})

	if err := tb.connect(alive); err != nil {
		t.Fatal(err)
	}
	tb.waitUntil(t, deliveryTimeout, "the messages published while it was away", func(tb *tab) bool { return len(tb.seqs) >= n })
	tb.check(t, n, 0)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.resumes == 0 {
		t.Errorf("the reconnect after the welcome's cursor %s was not a whole resume", start)
	}
}
