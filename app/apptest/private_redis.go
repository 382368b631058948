package apptest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Private Redis ports: below the ephemeral range (32768 and up on Linux), so no
// outgoing connection takes one meanwhile; picked at random, and another tried when
// a port is taken.
const (
	privatePortMin   = 20_000
	privatePortMax   = 32_000
	privatePortTries = 20
)

// PrivateRedis is a redis-server of the test's own, for what must not be done to the
// shared one: refusing keys, pausing, stopping.
type PrivateRedis struct {
	URL    string // redis://127.0.0.1:port/0
	Client *redis.Client
	Env    map[string]string // REDIS_URL for the servers
}

// NewPrivateRedis starts a redis-server on a loopback port, without persistence, and
// stops it when the test ends.
func NewPrivateRedis(t testing.TB) *PrivateRedis {
	t.Helper()
	for range privatePortTries {
		port := privatePortMin + rand.IntN(privatePortMax-privatePortMin)
		if r := startRedis(t, port); r != nil {
			return r
		}
	}
	t.Fatalf("no free port for a private redis-server after %d tries", privatePortTries)
	return nil
}

// startRedis runs redis-server on port; nil when it exits first (the port is taken).
func startRedis(t testing.TB, port int) *PrivateRedis {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (apt-get install redis-server): %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	deadline := time.Now().Add(10 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		select {
		case <-exited:
			rdb.Close()
			return nil
		default:
		}
		// The answer must come from our process: the port may be another's, which
		// answers before ours has failed to bind it and exited.
		if info, err := rdb.Info(context.Background(), "server").Result(); err == nil {
			if !strings.Contains(info, fmt.Sprintf("process_id:%d\r", cmd.Process.Pid)) {
				_ = cmd.Process.Kill()
				<-exited
				rdb.Close()
				return nil
			}
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			rdb.Close()
			t.Fatalf("private redis-server on %s did not answer within 10s", addr)
		}
		time.Sleep(wait)
	}
	t.Cleanup(func() {
		rdb.Close()
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "redis://" + addr + "/0"
	return &PrivateRedis{URL: url, Client: rdb, Env: map[string]string{"REDIS_URL": url}}
}
