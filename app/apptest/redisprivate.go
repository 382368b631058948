package apptest

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence/redistest"
)

// privateRedisOpTimeout bounds one command of the helper itself (CONFIG SET, DEL):
// the server is the test's own and idle apart from the servers under test.
const privateRedisOpTimeout = 5 * time.Second

// PrivateRedis is a redis-server of the test's own, without persistence, on a unix
// socket in t.TempDir() (no port to pick, none another process can take first): the
// Redis a fault test may pause, restart empty or make refuse writes without touching
// the shared one. It is killed when the test ends.
type PrivateRedis struct {
	Socket string
	URL    string // unix://<socket>, a REDIS_URL
	Prefix string // a key prefix of the test's own, as on the shared Redis
	Client *redis.Client

	proc *redistest.Proc
}

// NewPrivateRedis starts the server and waits until it answers.
func NewPrivateRedis(t testing.TB) *PrivateRedis {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	p, err := redistest.StartProc(t, dir, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no")
	if err != nil {
		t.Fatalf("private redis: %v", err)
	}
	r := &PrivateRedis{Socket: sock, URL: "unix://" + sock, Prefix: Unique("bridge:test") + ":", proc: p}
	r.Client = redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { r.Client.Close() })
	return r
}

// Env is REDIS_URL and BRIDGE_REDIS_PREFIX for servers on this Redis.
func (r *PrivateRedis) Env() map[string]string {
	return map[string]string{"REDIS_URL": r.URL, "BRIDGE_REDIS_PREFIX": r.Prefix}
}

// Pause stops the server with SIGSTOP: connections stay open and nothing answers, as
// a Redis stuck in a long command, a fork or a VM pause.
func (r *PrivateRedis) Pause(t testing.TB) {
	t.Helper()
	if err := r.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues the server after Pause.
func (r *PrivateRedis) Resume(t testing.TB) {
	t.Helper()
	if err := r.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Restart kills the server (SIGKILL) and starts it again on the same socket, empty:
// a Redis restarted without persistence.
func (r *PrivateRedis) Restart(t testing.TB) {
	t.Helper()
	if err := r.proc.Restart(); err != nil {
		t.Fatalf("private redis restart: %v", err)
	}
}

// Kill ends the server with SIGKILL; Start brings it back on the same socket, empty.
func (r *PrivateRedis) Kill() { r.proc.Kill() }

// Start starts the server again after Kill.
func (r *PrivateRedis) Start(t testing.TB) {
	t.Helper()
	if err := r.proc.Start(); err != nil {
		t.Fatalf("private redis start: %v", err)
	}
}

// RefuseWrites sets maxmemory below what the server already uses, with the
// noeviction policy: every write (and every script that may write) is answered with
// an OOM error, reads still work — a Redis that ran out of memory.
func (r *PrivateRedis) RefuseWrites(t testing.TB) {
	t.Helper()
	r.config(t, "maxmemory-policy", "noeviction")
	r.config(t, "maxmemory", "1")
	ctx, cancel := context.WithTimeout(context.Background(), privateRedisOpTimeout)
	defer cancel()
	if err := r.Client.Set(ctx, r.Prefix+"probe", "x", 0).Err(); err == nil {
		t.Fatalf("private redis still accepts writes after CONFIG SET maxmemory 1")
	}
}

// AllowWrites lifts RefuseWrites (maxmemory 0: no limit).
func (r *PrivateRedis) AllowWrites(t testing.TB) {
	t.Helper()
	r.config(t, "maxmemory", "0")
}

func (r *PrivateRedis) config(t testing.TB, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), privateRedisOpTimeout)
	defer cancel()
	if err := r.Client.ConfigSet(ctx, key, value).Err(); err != nil {
		t.Fatalf("private redis CONFIG SET %s %s: %v", key, value, err)
	}
}

// Del deletes keys and returns how many existed.
func (r *PrivateRedis) Del(t testing.TB, keys ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), privateRedisOpTimeout)
	defer cancel()
	n, err := r.Client.Del(ctx, keys...).Result()
	if err != nil {
		t.Fatalf("private redis DEL %v: %v", keys, err)
	}
	return n
}

// Keys lists the keys matching pattern (SCAN, for a test's small data set).
func (r *PrivateRedis) Keys(t testing.TB, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), privateRedisOpTimeout)
	defer cancel()
	var keys []string
	iter := r.Client.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("private redis SCAN %s: %v", pattern, err)
	}
	return keys
}

// String names the server in messages.
func (r *PrivateRedis) String() string { return fmt.Sprintf("private redis at %s", r.Socket) }
