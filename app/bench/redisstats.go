package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStatsTimeout bounds one INFO round over every master.
const redisStatsTimeout = 10 * time.Second

// ownCommands are what reading the figures costs: left out of them.
var ownCommands = []string{"info"}

// RedisStats is what Redis says it has done so far, summed over every master: the
// calls of each command (INFO commandstats; commands a script runs count too) and its
// CPU time (INFO cpu, used_cpu_sys + used_cpu_user).
type RedisStats struct {
	At    time.Time
	Calls map[string]int64
	CPU   time.Duration
}

// RedisMeter reads RedisStats from one Redis server or every master of a cluster.
type RedisMeter struct {
	each  func(ctx context.Context, f func(ctx context.Context, c *redis.Client) error) error
	close func() error
}

// NewRedisMeter connects to rawURL: redis://, rediss:// or
// redis+cluster://[user:pass@]host:port[,host:port…] (REDIS_URL's forms).
func NewRedisMeter(rawURL string) (*RedisMeter, error) {
	if rest, ok := strings.CutPrefix(rawURL, "redis+cluster://"); ok {
		rest, _, _ = strings.Cut(rest, "/")
		rest, _, _ = strings.Cut(rest, "?")
		opt := &redis.ClusterOptions{}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			u, err := url.Parse("redis://" + rest[:at+1] + "x")
			if err != nil {
				return nil, fmt.Errorf("redis stats: %w", err)
			}
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
			rest = rest[at+1:]
		}
		opt.Addrs = strings.Split(rest, ",")
		if slices.Contains(opt.Addrs, "") {
			return nil, fmt.Errorf("redis stats: %q: an empty host:port", rawURL)
		}
		c := redis.NewClusterClient(opt)
		return &RedisMeter{each: c.ForEachMaster, close: c.Close}, nil
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis stats: %w", err)
	}
	c := redis.NewClient(opt)
	return &RedisMeter{
		each:  func(ctx context.Context, f func(context.Context, *redis.Client) error) error { return f(ctx, c) },
		close: c.Close,
	}, nil
}

// Close closes the meter's connections.
func (m *RedisMeter) Close() error { return m.close() }

// Read takes the figures now.
func (m *RedisMeter) Read(ctx context.Context) (RedisStats, error) {
	ctx, cancel := context.WithTimeout(ctx, redisStatsTimeout)
	defer cancel()
	st := RedisStats{At: time.Now(), Calls: map[string]int64{}}
	var mu sync.Mutex // ForEachMaster runs f on the masters at once
	err := m.each(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats", "cpu").Result()
		if err != nil {
			return fmt.Errorf("redis stats: INFO at %s: %w", c.Options().Addr, err)
		}
		calls, cpu, err := parseInfo(info)
		if err != nil {
			return fmt.Errorf("redis stats: INFO at %s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for k, v := range calls {
			st.Calls[k] += v
		}
		st.CPU += cpu
		return nil
	})
	return st, err
}

// parseInfo reads cmdstat_<command>:calls=N,… and used_cpu_{sys,user}:<seconds>.
func parseInfo(info string) (map[string]int64, time.Duration, error) {
	calls := map[string]int64{}
	var cpu float64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "cmdstat_"):
			field, _, _ := strings.Cut(v, ",")
			n, ok := strings.CutPrefix(field, "calls=")
			if !ok {
				return nil, 0, fmt.Errorf("unexpected commandstats line %q", sc.Text())
			}
			c, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("commandstats line %q: %w", sc.Text(), err)
			}
			calls[strings.TrimPrefix(k, "cmdstat_")] = c
		case k == "used_cpu_sys" || k == "used_cpu_user":
			s, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, 0, fmt.Errorf("cpu line %q: %w", sc.Text(), err)
			}
			cpu += s
		}
	}
	return calls, time.Duration(cpu * float64(time.Second)), sc.Err()
}

// RedisCost is the Redis work of a run per message, with the background (what Redis
// did during an idle interval, scaled to the run's length) taken out.
type RedisCost struct {
	Messages int64
	Run      time.Duration
	Calls    map[string]float64 // per message
	CPU      time.Duration      // per message
}

// Cost is what the run between run0 and run1 cost per message, less the background
// measured between idle0 and idle1.
func Cost(idle0, idle1, run0, run1 RedisStats, messages int64) RedisCost {
	runLen, idleLen := run1.At.Sub(run0.At), idle1.At.Sub(idle0.At)
	scale := 0.0
	if idleLen > 0 {
		scale = runLen.Seconds() / idleLen.Seconds()
	}
	c := RedisCost{Messages: messages, Run: runLen, Calls: map[string]float64{}}
	if messages <= 0 {
		return c
	}
	names := map[string]bool{}
	for k := range run1.Calls {
		names[k] = true
	}
	for k := range names {
		if slices.Contains(ownCommands, k) {
			continue
		}
		d := float64(run1.Calls[k]-run0.Calls[k]) - scale*float64(idle1.Calls[k]-idle0.Calls[k])
		if d != 0 {
			c.Calls[k] = d / float64(messages)
		}
	}
	cpu := float64(run1.CPU-run0.CPU) - scale*float64(idle1.CPU-idle0.CPU)
	c.CPU = time.Duration(cpu / float64(messages))
	return c
}

// Total is the commands per message, every command together.
func (c RedisCost) Total() float64 {
	var t float64
	for _, v := range c.Calls {
		t += v
	}
	return t
}

// Report prints the commands per message, most first, and the CPU per message.
func (c RedisCost) Report(w io.Writer) {
	fmt.Fprintf(w, "redis         %.2f commands and %.1f µs of Redis CPU per message (%d messages in %s, background subtracted)\n",
		c.Total(), float64(c.CPU)/float64(time.Microsecond), c.Messages, c.Run.Round(time.Millisecond))
	names := slices.Collect(maps.Keys(c.Calls))
	slices.SortFunc(names, func(a, b string) int {
		if c.Calls[a] != c.Calls[b] {
			if c.Calls[a] > c.Calls[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, n := range names {
		if v := c.Calls[n]; v >= 0.005 || v <= -0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", n, v))
		}
	}
	fmt.Fprintf(w, "redis calls   %s\n", strings.Join(parts, ", "))
}

// redisRun is -redis-stats in a bench: the meter, the idle interval measured before
// the run, and the figures at the run's start.
type redisRun struct {
	m                  *RedisMeter
	idle0, idle1, run0 RedisStats
}

// startRedisStats measures Redis idle for the run's length (heartbeats and whatever
// else runs without messages: the background), then takes the run's first figures.
func startRedisStats(ctx context.Context, o benchOpts, stdout io.Writer) (*redisRun, error) {
	m, err := NewRedisMeter(o.redisURL)
	if err != nil {
		return nil, fmt.Errorf("bench: -redis-url: %w", err)
	}
	r := &redisRun{m: m}
	fmt.Fprintf(stdout, "measuring Redis idle for %s (the background) ...\n", o.duration)
	if r.idle0, err = m.Read(ctx); err != nil {
		m.Close()
		return nil, err
	}
	idle := time.NewTimer(o.duration)
	select {
	case <-idle.C:
	case <-ctx.Done():
		idle.Stop()
		m.Close()
		return nil, ctx.Err()
	}
	if r.idle1, err = m.Read(ctx); err == nil {
		r.run0, err = m.Read(ctx)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return r, nil
}

// cost takes the run's last figures: the cost of messages, per message.
func (r *redisRun) cost(ctx context.Context, messages int64) (*RedisCost, error) {
	run1, err := r.m.Read(ctx)
	if err != nil {
		return nil, err
	}
	c := Cost(r.idle0, r.idle1, r.run0, run1, messages)
	return &c, nil
}

func (r *redisRun) close() { _ = r.m.Close() }
