package presence

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence/redistest"
)

// testRedisURL is the Redis the tests use.
func testRedisURL() string { return redistest.URL() }

// newTestRedis connects to the real Redis or fails the test with how to start it. It
// returns options with a key prefix of this test's own; every key under it is
// deleted when the test ends.
func newTestRedis(t testing.TB) (redis.UniversalClient, RedisOptions) {
	t.Helper()
	url := testRedisURL()
	if onCluster != "" {
		url = onCluster
	}
	rdb, prefix := redistest.NewAt(t, NewRedisClient, url)
	if onCluster != "" && !isCluster(rdb) {
		t.Fatalf("%s: NewRedisClient made a %T, want a cluster client", onCluster, rdb)
	}
	return rdb, RedisOptions{Prefix: prefix}
}

// onCluster, while set (by TestContractsOnRedisCluster, which runs alone: no test
// of this package calls t.Parallel before it), makes newTestRedis connect to that
// Redis Cluster instead.
var onCluster string

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

// testCtx is a context that ends with the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
