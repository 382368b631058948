package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/bench"
)

// The shape of the Redis cost measurement.
const (
	costUsers    = 20   // users, one WebSocket each, spread over the instances
	costMessages = 2000 // targeted messages, costMessages/costUsers each
	// costIdle is the idle interval whose Redis work (heartbeats) is the background
	// taken out of the run, scaled to the run's length.
	costIdle = 3 * time.Second
)

// TestRedisCommandsPerMessage measures Redis's work for one targeted message (INFO
// commandstats and CPU on a Redis of the test's own, background subtracted) with 2
// and with 20 live instances, every message delivered exactly once. It prints the
// figures; it asserts no figure (issue 11 wants at most 6 commands, equal within 10 %
// at both sizes). -faults.redis=cluster measures a cluster.
func TestRedisCommandsPerMessage(t *testing.T) {
	costs := map[int]bench.RedisCost{}
	for _, n := range []int{2, 20} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) { costs[n] = redisCost(t, n) })
	}
	if c2, c20 := costs[2], costs[20]; c2.Messages > 0 && c20.Messages > 0 {
		t.Logf("commands per targeted message: %.2f at 2 instances, %.2f at 20 (%+.0f %%); Redis CPU %s and %s per message",
			c2.Total(), c20.Total(), 100*(c20.Total()-c2.Total())/c2.Total(), c2.CPU, c20.CPU)
	}
}

func redisCost(t *testing.T, instances int) bench.RedisCost {
	r := newFaultRedis(t, "")
	tp := apptest.NewTopology(t, "cost")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_API_KEY": apiKey, "BRIDGE_SEND_QUEUE": "4096"}
	for _, m := range []map[string]string{tp.Env, r.env()} {
		for k, v := range m {
			env[k] = v
		}
	}
	fl := &fleet{}
	for _, p := range startCluster(t, instances, env) {
		fl.add(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	clients := make([]*resumer, costUsers)
	for i := range clients {
		clients[i] = newResumer(fmt.Sprintf("c%d", i), "ws", fl, i%instances)
		wg.Add(1)
		go func() { defer wg.Done(); clients[i].run(ctx) }()
	}
	for _, c := range clients {
		select {
		case <-c.welcomed:
		case <-time.After(procStartTimeout):
			t.Fatalf("client %s: no welcome within %s", c.user, procStartTimeout)
		}
	}
	waitUsers(t, fl.list()[0], costUsers)

	m, err := bench.NewRedisMeter(env["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	read := func() bench.RedisStats {
		t.Helper()
		st, err := m.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	idle0 := read()
	hold(costIdle) // the idle interval measured, not a wait for an event
	idle1 := read()

	run0 := read()
	bodies := make([][]byte, costMessages)
	for j := range bodies {
		bodies[j], _ = json.Marshal(loadBody{User: clients[j%costUsers].user, Seq: j / costUsers, T: time.Now().UnixMilli()})
	}
	newPublisher(t, tp).publish(t, "cost", bodies)
	apptest.Eventually(t, deliveryTimeout, "every message delivered", func() bool {
		for _, c := range clients {
			if len(c.snapshot().got) < costMessages/costUsers {
				return false
			}
		}
		return true
	})
	run1 := read()

	for _, c := range clients {
		if got := c.snapshot().count(expected{targeted: costMessages / costUsers}); got.lost+got.dup+got.misdelivered+got.strays > 0 {
			t.Errorf("client %s: %+v, want every message once", c.user, got)
		}
	}
	cost := bench.Cost(idle0, idle1, run0, run1, costMessages)
	var out strings.Builder
	cost.Report(&out)
	t.Logf("%d instances, %d users, redis %s:\n%s", instances, costUsers, *faultsRedis, out.String())
	if cost.Total() <= 0 {
		t.Errorf("%.2f Redis commands per message: the measurement saw nothing", cost.Total())
	}
	return cost
}
