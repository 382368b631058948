package apptest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence"
	"github.com/pushbridge/pushbridge/presence/redistest"
)

// RedisURL is the Redis the tests use: $TEST_REDIS_URL or the local one.
func RedisURL() string { return redistest.URL() }

// Redis is a test's own key prefix on the real Redis.
type Redis struct {
	Client redis.UniversalClient
	Prefix string            // bridge:test_<random>:
	Env    map[string]string // REDIS_URL and BRIDGE_REDIS_PREFIX for the servers
}

// NewRedis connects to the real Redis (or fails the test with how to start it) and
// names a key prefix of this test's own; every key under it is deleted when the test
// ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	rdb, prefix := redistest.New(t, presence.NewRedisClient)
	return &Redis{Client: rdb, Prefix: prefix, Env: map[string]string{"REDIS_URL": RedisURL(), "BRIDGE_REDIS_PREFIX": prefix}}
}
