package bench_test

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/app/bench"
)

// TestRedisCostCountsWhatRan: on a Redis of the test's own, 500 "messages" of one SET
// and two INCRs each cost 3 commands per message — set 1, incr 2 — and the meter's own
// INFO calls are left out.
func TestRedisCostCountsWhatRan(t *testing.T) {
	r := apptest.NewPrivateRedis(t)
	m, err := bench.NewRedisMeter(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	read := func() bench.RedisStats {
		t.Helper()
		st, err := m.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if err := r.Client.Ping(ctx).Err(); err != nil { // its connection's HELLO before the count
		t.Fatal(err)
	}
	idle0 := read()
	idle1 := read()
	run0 := read()
	const n = 500
	for i := range n {
		k := r.Prefix + "k"
		if err := r.Client.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		r.Client.Incr(ctx, k)
		r.Client.Incr(ctx, k)
	}
	run1 := read()
	c := bench.Cost(idle0, idle1, run0, run1, n)
	for cmd, want := range map[string]float64{"set": 1, "incr": 2} {
		if got := c.Calls[cmd]; math.Abs(got-want) > 0.001 {
			t.Errorf("%s per message %.3f, want %v", cmd, got, want)
		}
	}
	if got := c.Total(); math.Abs(got-3) > 0.001 {
		t.Errorf("commands per message %.3f, want 3 (%v)", got, c.Calls)
	}
	var out strings.Builder
	c.Report(&out)
	if !strings.Contains(out.String(), "3.00 commands") || !strings.Contains(out.String(), "incr 2.00, set 1.00") {
		t.Errorf("report:\n%s", out.String())
	}
	t.Log(out.String())
}

// TestCostSubtractsTheBackground: what Redis did while idle, scaled to the run's
// length, is taken out of the run.
func TestCostSubtractsTheBackground(t *testing.T) {
	at := time.Unix(1000, 0)
	st := func(sec int, calls map[string]int64, cpu time.Duration) bench.RedisStats {
		return bench.RedisStats{At: at.Add(time.Duration(sec) * time.Second), Calls: calls, CPU: cpu}
	}
	idle0 := st(0, map[string]int64{"hset": 0, "info": 0}, 0)
	idle1 := st(2, map[string]int64{"hset": 10, "info": 2}, 20*time.Millisecond) // 5 beats/s, 10 ms CPU/s
	run0 := st(2, map[string]int64{"hset": 10, "info": 3}, 20*time.Millisecond)
	run1 := st(6, map[string]int64{"hset": 30, "evalsha": 100, "info": 4}, 120*time.Millisecond)
	c := bench.Cost(idle0, idle1, run0, run1, 100)
	// 4 s of run: 20 background hsets and 40 ms of background CPU.
	if c.Calls["hset"] != 0 || c.Calls["evalsha"] != 1 || len(c.Calls) != 1 {
		t.Errorf("calls per message %v, want only evalsha 1", c.Calls)
	}
	if c.CPU != 600*time.Microsecond {
		t.Errorf("CPU per message %s, want 600µs", c.CPU)
	}
}

// TestBenchRedisStats: `pushbridge bench -redis-stats` against an in-process server on
// a Redis of the test's own prints the Redis commands and CPU per message of the run;
// without a Redis to read it refuses to start.
func TestBenchRedisStats(t *testing.T) {
	r := apptest.NewPrivateRedis(t)
	var out, errOut strings.Builder
	args := []string{"pushbridge", "bench", "-redis-stats", "-redis-url", r.URL, "-conns", "10", "-rate", "200", "-duration", "1s"}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
	}
	m := regexp.MustCompile(`redis +([0-9.]+) commands and (-?[0-9.]+) µs of Redis CPU per message \((\d+) messages`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no Redis figures in:\n%s", out.String())
	}
	if cmds, _ := strconv.ParseFloat(m[1], 64); cmds < 1 || m[3] == "0" {
		t.Errorf("%s commands per message over %s messages: the run's Redis work was not seen:\n%s", m[1], m[3], out.String())
	}
	for _, want := range []string{"measuring Redis idle for 1s", "redis calls   ", "lost          0\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())

	err := app.Run(context.Background(), []string{"pushbridge", "bench", "-redis-stats"}, func(string) string { return "" }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "-redis-stats needs -redis-url or REDIS_URL") {
		t.Errorf("-redis-stats without a Redis: %v", err)
	}
}
