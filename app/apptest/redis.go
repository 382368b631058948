package apptest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence"
)

// RedisURL is the Redis the tests use: $TEST_REDIS_URL or the local one.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis is a test's own key prefix on the real Redis.
type Redis struct {
	Client *redis.Client
	Prefix string            // bridge:test_<random>:
	Env    map[string]string // REDIS_URL and BRIDGE_REDIS_PREFIX for the servers
}

// NewRedis connects to the real Redis (or fails the test with how to start it) and
// names a key prefix of this test's own; every key under it is deleted when the test
// ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	rdb, err := presence.NewRedisClient(context.Background(), RedisURL())
	if err != nil {
		t.Fatalf("Redis is not reachable: %v (start it with: redis-server --daemonize yes --save '' --appendonly no)", err)
	}
	prefix := Unique("bridge:test") + ":"
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: scan %s*: %v", prefix, err)
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("cleanup: delete %d keys: %v", len(keys), err)
			}
		}
	})
	return &Redis{Client: rdb, Prefix: prefix, Env: map[string]string{"REDIS_URL": RedisURL(), "BRIDGE_REDIS_PREFIX": prefix}}
}
