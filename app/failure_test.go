package app

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestOwnFault sorts real Redis errors, wrapped as the dispatcher wraps them: only a
// refusal of the message itself counts toward the delivery limit; no answer, or an
// answer about Redis's own state, never does.
func TestOwnFault(t *testing.T) {
	rdb := unixRedis(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "s", "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	errOf := func(what string, err error) error {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		return fmt.Errorf("dispatch: %w", err)
	}
	type fault struct {
		name string
		err  error
		own  bool
	}
	gone := redis.NewClient(&redis.Options{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), MaxRetries: -1})
	defer gone.Close()
	cases := []fault{
		{"WRONGTYPE", errOf("xadd", rdb.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"f", "v"}}).Err()), true},
		{"a script's error about the data", errOf("eval", rdb.Eval(ctx, "return redis.call('XADD', KEYS[1], '*', 'f', 'v')", []string{"s"}).Err()), true},
		{"NOSCRIPT", errOf("evalsha", rdb.EvalSha(ctx, "0000000000000000000000000000000000000000", nil).Err()), false},
		{"no answer", errOf("ping", gone.Ping(ctx).Err()), false},
		{"context", errOf("ctx", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			return rdb.Get(cctx, "s").Err()
		}()), false},
	}
	// Redis out of memory refuses every write, whoever's.
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, fault{"OOM", errOf("set", rdb.Set(ctx, "k", "v", 0).Err()), false})
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// A replica refuses every write too.
	if err := rdb.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, fault{"READONLY", errOf("set", rdb.Set(ctx, "k", "v", 0).Err()), false})

	for _, tc := range cases {
		if got := ownFault(tc.err); got != tc.own {
			t.Errorf("%s (%v): ownFault %v, want %v", tc.name, tc.err, got, tc.own)
		}
	}
}

// unixRedis starts a redis-server of the test's own on a unix socket in its temp dir:
// this test makes it run out of memory and turn replica.
func unixRedis(t *testing.T) *redis.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (apt-get install redis-server): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; rdb.Ping(context.Background()).Err() != nil; wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the test's redis-server did not answer within 10s")
		}
		time.Sleep(wait)
	}
	return rdb
}
