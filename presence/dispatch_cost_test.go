package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestDispatchCommandsPerMessage counts, with INFO commandstats on a Redis of the
// test's own, the Redis commands one targeted message costs with a dedupe key, at 2
// and at 20 live instances (issue 11: the same at both, at most 6): dispatched one at
// a time, and in batches of one message per user as a queue's consumer hands them
// off, where a script call carries the batch and one payload goes to each destination
// instance (so the publishes per message grow with the instances a batch reaches, up
// to one; the rest must not). The figures are logged; commands are counted, not timed.
func TestDispatchCommandsPerMessage(t *testing.T) {
	const users, perUser = 20, 20
	type setup struct {
		instances int
		batched   bool
	}
	type cost struct{ all, publish float64 }
	costs := map[setup]cost{}
	for _, instances := range []int{2, 20} {
		rdb := privateRedis(t)
		opts := RedisOptions{Prefix: "bridge:cost:", PresenceTTL: time.Minute}.withDefaults()
		ctx := testCtx(t)
		spreadUsers(t, ctx, rdb, opts, instances, users)
		disp := NewRedisDispatcher(rdb, opts)
		// Steady state: the script loaded, each user's stream made (a stream's first
		// message costs three more: its DEL, the stream's and the meta's PEXPIRE).
		for u := range users {
			if _, err := disp.Dispatch(ctx, &Message{UserID: "u" + strconv.Itoa(u), Body: []byte("warm")}, ""); err != nil {
				t.Fatal(err)
			}
		}
		for _, batched := range []bool{false, true} {
			before := commandStats(t, ctx, rdb)
			n := 0
			for round := range perUser {
				var b []Dispatch
				for u := range users {
					m := &Message{UserID: "u" + strconv.Itoa(u), RoutingKey: "k", Body: []byte(`{"n":` + strconv.Itoa(round) + `}`)}
					b = append(b, Dispatch{M: m, Key: fmt.Sprintf("q\x00id-%v-%d-%d", batched, round, u)})
				}
				if !batched {
					for _, x := range b {
						if _, err := disp.Dispatch(ctx, x.M, x.Key); err != nil {
							t.Fatal(err)
						}
					}
				} else {
					<-disp.dispatch(ctx, b) // its publish ended too
					for _, x := range b {
						if x.Err != nil || x.Dup {
							t.Fatalf("dup %v, err %v", x.Dup, x.Err)
						}
					}
				}
				n += len(b)
			}
			after := commandStats(t, ctx, rdb)
			after["info"]-- // the INFO that measured
			var calls, pubs int64
			for name, c := range after {
				calls += c - before[name]
				if name == "publish" || name == "spublish" {
					pubs += c - before[name]
				}
			}
			how := "one at a time"
			if batched {
				how = fmt.Sprintf("in batches of %d", users)
			}
			c := cost{float64(calls) / float64(n), float64(pubs) / float64(n)}
			costs[setup{instances, batched}] = c
			t.Logf("%d live instances, %s: %d commands for %d targeted messages = %.2f per message (%.2f of them publishes)", instances, how, calls, n, c.all, c.publish)
		}
		if disp.PublishFailed.Load() != 0 {
			t.Errorf("%d publishes failed", disp.PublishFailed.Load())
		}
	}
	for _, batched := range []bool{false, true} {
		c2, c20 := costs[setup{2, batched}], costs[setup{20, batched}]
		if c2.all > 6 || c20.all > 6 || c2.publish > 1 || c20.publish > 1 {
			t.Errorf("batched %v: commands per targeted message %.2f at 2 instances, %.2f at 20 (publishes %.2f, %.2f); want at most 6, publishes at most 1",
				batched, c2.all, c20.all, c2.publish, c20.publish)
		}
		if d := (c20.all - c20.publish) / (c2.all - c2.publish); d > 1.1 || d < 0.9 {
			t.Errorf("batched %v: commands besides the publishes per message at 20 instances are %.2f× those at 2; want within 10%%", batched, d)
		}
	}
}

// commandStats is the calls of every command INFO commandstats lists, by name.
func commandStats(t *testing.T, ctx context.Context, rdb redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// spreadUsers makes instances live instances (pb-00, pb-01, …) under opts and puts
// users u0…u<users-1> on them, user u on instance u mod instances: every user on one
// instance, the others holding other users.
func spreadUsers(tb testing.TB, ctx context.Context, rdb redis.UniversalClient, opts RedisOptions, instances, users int) {
	tb.Helper()
	for i := range instances {
		o := opts
		o.Instance = fmt.Sprintf("pb-%02d", i)
		if _, err := NewRedisInstances(rdb, o).Beat(ctx, Instance{ID: o.Instance, Started: time.Now()}); err != nil {
			tb.Fatal(err)
		}
		d := NewRedisDirectory(rdb, o)
		for u := i; u < users; u += instances {
			if err := d.Add(ctx, Entry{User: "u" + strconv.Itoa(u), Instance: o.Instance, Transport: "ws", Since: time.Now()}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
