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
// and at 20 live instances (issue 11: the same at both, at most 6). The figures are
// logged; commands are counted, not timed.
func TestDispatchCommandsPerMessage(t *testing.T) {
	const users, perUser = 20, 20
	costs := map[int]float64{}
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
		before := commandCalls(t, ctx, rdb)
		n := 0
		for round := range perUser {
			for u := range users {
				m := &Message{UserID: "u" + strconv.Itoa(u), RoutingKey: "k", Body: []byte(`{"n":` + strconv.Itoa(round) + `}`)}
				if _, err := disp.Dispatch(ctx, m, fmt.Sprintf("q\x00id-%d-%d", round, u)); err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
		calls := commandCalls(t, ctx, rdb) - before - 1 // the INFO that measured
		costs[instances] = float64(calls) / float64(n)
		t.Logf("%d live instances: %d commands for %d targeted messages = %.2f per message", instances, calls, n, costs[instances])
		if disp.PublishFailed.Load() != 0 {
			t.Errorf("%d publishes failed", disp.PublishFailed.Load())
		}
	}
	if costs[2] > 6 || costs[20] > 6 {
		t.Errorf("commands per targeted message: %.2f at 2 instances, %.2f at 20; want at most 6", costs[2], costs[20])
	}
	if d := costs[20] / costs[2]; d > 1.1 || d < 0.9 {
		t.Errorf("commands per message at 20 instances are %.2f× those at 2; want within 10%%", d)
	}
}

// commandCalls sums the calls of every command INFO commandstats lists.
func commandCalls(t *testing.T, ctx context.Context, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for line := range strings.Lines(info) {
		_, rest, ok := strings.Cut(line, "calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		total += n
	}
	return total
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
