// Package redistest gives a test a key prefix of its own on the shared Redis the tests
// use, and deletes every key under it when the test ends. presence's own tests and
// app/apptest both use it, so there is one such helper.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cleanupTimeout bounds the deletion of a test's keys after it ended.
const cleanupTimeout = 5 * time.Second

// URL is the Redis the tests use: $TEST_REDIS_URL or the local one.
func URL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Connect makes a client for a Redis URL and checks it answers (presence.NewRedisClient
// is one; it is passed in so that this package does not import presence, whose own
// tests use it).
type Connect func(ctx context.Context, url string) (redis.UniversalClient, error)

// New connects to the tests' Redis with connect, or fails the test saying how to start
// it, and names a key prefix of this test's own ("bridge:test_<random>:"); every key
// under it is deleted, and the client closed, when the test ends.
func New(t testing.TB, connect Connect) (redis.UniversalClient, string) {
	t.Helper()
	return NewAt(t, connect, URL())
}

// NewAt is New on the Redis at url (a server, or a cluster of the test's own).
func NewAt(t testing.TB, connect Connect, url string) (redis.UniversalClient, string) {
	t.Helper()
	rdb, err := connect(context.Background(), url)
	if err != nil {
		t.Fatalf("Redis is not reachable: %v (start it with: redis-server --daemonize yes --save '' --appendonly no)", err)
	}
	prefix := NewPrefix()
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			// Each master holds its own slots' keys.
			var mu sync.Mutex // ForEachMaster calls in parallel
			err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
				mu.Lock()
				defer mu.Unlock()
				deleteUnder(ctx, t, m, prefix)
				return nil
			})
			if err != nil {
				t.Errorf("cleanup: %v", err)
			}
			return
		}
		deleteUnder(ctx, t, rdb, prefix)
	})
	return rdb, prefix
}

// deleteUnder deletes every key under prefix on one server, one DEL per key in a
// pipeline (on a cluster node, keys of several slots may not share a DEL).
func deleteUnder(ctx context.Context, t testing.TB, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup: scan %s*: %v", prefix, err)
	}
	if len(keys) == 0 {
		return
	}
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Errorf("cleanup: delete %d keys: %v", len(keys), err)
	}
}

// NewPrefix is a key prefix of a test's own: "bridge:test_<random>:".
func NewPrefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "bridge:test_" + hex.EncodeToString(b[:]) + ":"
}
