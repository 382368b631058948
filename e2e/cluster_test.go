package e2e_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// deliveryTimeout bounds the wait for a test's messages to arrive: tens of thousands
// of frames through three processes on shared CPUs, with the race detector on.
const deliveryTimeout = 90 * time.Second

func targeted(user string, seq int) []byte {
	return fmt.Appendf(nil, `{"receiveUserId":%q,"seq":%d}`, user, seq)
}

func broadcast(b int) []byte { return fmt.Appendf(nil, `{"b":%d}`, b) }

var fence = []byte(`{"fence":true}`)

// startCluster runs n instances with one environment, named A, B, C, …
func startCluster(t *testing.T, n int, env map[string]string) []*proc {
	t.Helper()
	ps := make([]*proc, n)
	for i := range ps {
		name := string(rune('A' + i))
		e := map[string]string{"BRIDGE_INSTANCE_ID": "e2e" + name}
		for k, v := range env {
			e[k] = v
		}
		ps[i] = startProc(t, name, e)
	}
	return ps
}

type presenceCounts struct {
	Users     int `json:"users"`
	Instances []struct {
		ID    string `json:"id"`
		Users int    `json:"users"`
	} `json:"instances"`
}

// waitUsers waits until the directory, read through p, holds users users in all.
func waitUsers(t *testing.T, p *proc, users int) {
	t.Helper()
	apptest.Eventually(t, 20*time.Second, fmt.Sprintf("%d users in presence", users), func() bool {
		var pc presenceCounts
		if err := apptest.GetJSON(p.URL+"/api/presence", apiKey, &pc); err != nil {
			t.Fatal(err)
		}
		return pc.Users == users
	})
}

// sendFence broadcasts a last message and waits until every tab has it: whatever
// was still on its way to a tab (a late copy) has arrived by then.
func sendFence(t *testing.T, pub *publisher, tabs []*tab) {
	t.Helper()
	pub.publish(t, "contract", [][]byte{fence})
	for _, tb := range tabs {
		tb.waitUntil(t, deliveryTimeout, "the fence", func(tb *tab) bool { return tb.fences == 1 })
	}
}

// TestClusterDeliversExactlyOnce: three instances, 200 users spread over them, 20,000
// targeted messages and 200 broadcasts published to RabbitMQ — so most messages are
// consumed by an instance that does not hold the user. Every tab gets each of its
// messages exactly once, in id order (the order of the history, which resume relies
// on). As competing consumers of one queue, two instances may number one user's
// messages out of publish order; with BRIDGE_SINGLE_ACTIVE_CONSUMER they keep it.
func TestClusterDeliversExactlyOnce(t *testing.T) {
	t.Run("competing consumers", func(t *testing.T) { clusterExactlyOnce(t, testRedisEnv(t), false, 200, 100, 200) })
	t.Run("single active consumer", func(t *testing.T) { clusterExactlyOnce(t, testRedisEnv(t), true, 200, 100, 200) })
}

// clusterExactlyOnce runs TestClusterDeliversExactlyOnce on the Redis of redisEnv,
// with users × perUser targeted messages and broadcasts broadcasts.
func clusterExactlyOnce(t *testing.T, redisEnv map[string]string, singleActive bool, users, perUser, broadcasts int) {
	env, tp := clusterEnvOn(t, redisEnv, map[string]string{"BRIDGE_SEND_QUEUE": "8192", "BRIDGE_SINGLE_ACTIVE_CONSUMER": fmt.Sprint(singleActive)})
	ps := startCluster(t, 3, env)
	tabs := make([]*tab, users)
	for i := range tabs {
		tabs[i] = openTab(fmt.Sprintf("u%d", i))
		if err := tabs[i].connect(ps[i%len(ps)]); err != nil {
			t.Fatal(err)
		}
	}
	waitUsers(t, ps[0], users)

	pub := newPublisher(t, tp)
	var batch [][]byte
	b := 0
	for j := range users * perUser {
		batch = append(batch, targeted(fmt.Sprintf("u%d", j%users), j/users))
		if j%(users*perUser/broadcasts) == 0 {
			batch = append(batch, broadcast(b))
			b++
		}
		if len(batch) >= 2000 {
			pub.publish(t, "contract", batch)
			batch = batch[:0]
		}
	}
	pub.publish(t, "contract", batch)
	for _, tb := range tabs {
		tb.waitUntil(t, deliveryTimeout, "all its messages", func(tb *tab) bool {
			return len(tb.seqs) >= perUser && len(tb.bcasts) >= broadcasts
		})
	}
	sendFence(t, pub, tabs)
	inPublishOrder := 0
	for _, tb := range tabs {
		tb.check(t, perUser, broadcasts)
		tb.mu.Lock()
		if slices.IsSorted(tb.seqs) {
			inPublishOrder++
		}
		tb.mu.Unlock()
	}
	if singleActive && inPublishOrder != users {
		t.Fatalf("with a single active consumer, %d of %d users got their messages in publish order, want all", inPublishOrder, users)
	}
	// Competing consumers may dispatch one user's messages out of publish order (two
	// instances each holding one in flight); each tab still reads them in id order.
	t.Logf("%d of %d users got their messages in publish order as well as id order", inPublishOrder, users)
}

// TestTabsOnTwoInstances: a user with a tab on each of two instances gets every
// message on both, in the same order.
func TestTabsOnTwoInstances(t *testing.T) {
	const n = 50
	env, tp := clusterEnv(t, nil)
	ps := startCluster(t, 2, env)
	tabs := []*tab{openTab("twin"), openTab("twin")}
	for i, tb := range tabs {
		if err := tb.connect(ps[i]); err != nil {
			t.Fatal(err)
		}
	}
	var up struct {
		Connections []struct{ Instance string } `json:"connections"`
	}
	apptest.Eventually(t, 10*time.Second, "twin on both instances", func() bool {
		if err := apptest.GetJSON(ps[0].URL+"/api/presence/twin", apiKey, &up); err != nil {
			t.Fatal(err)
		}
		return len(up.Connections) == 2 && up.Connections[0].Instance != up.Connections[1].Instance
	})
	pub := newPublisher(t, tp)
	var bodies [][]byte
	for i := range n {
		bodies = append(bodies, targeted("twin", i))
	}
	bodies = append(bodies, broadcast(0), targeted("someone-else", 0))
	pub.publish(t, "contract", bodies)
	for _, tb := range tabs {
		tb.waitUntil(t, deliveryTimeout, "all its messages", func(tb *tab) bool { return len(tb.seqs) >= n && len(tb.bcasts) >= 1 })
	}
	sendFence(t, pub, tabs)
	for _, tb := range tabs {
		tb.check(t, n, 1)
	}
	// Each stream in the same order on both (how the two streams interleave may differ).
	for _, s := range []string{"u ", "b "} {
		var a, b []string
		for _, id := range tabs[0].ids {
			if strings.HasPrefix(id, s) {
				a = append(a, id)
			}
		}
		for _, id := range tabs[1].ids {
			if strings.HasPrefix(id, s) {
				b = append(b, id)
			}
		}
		if !slices.Equal(a, b) {
			t.Errorf("the two tabs read different %q positions:\n%v\n%v", s, a, b)
		}
	}
}
