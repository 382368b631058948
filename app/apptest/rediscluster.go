package apptest

import (
	"testing"

	"github.com/pushbridge/pushbridge/presence/redistest"
)

// RedisCluster is a private Redis Cluster of three masters for one test; it lives in
// presence/redistest so that presence's own tests can start one too.
type RedisCluster = redistest.RedisCluster

// NewRedisCluster starts a private 3-master Redis Cluster, killed when the test ends.
func NewRedisCluster(t testing.TB) *RedisCluster { return redistest.NewRedisCluster(t) }

// NewRedisClusterWithReplicas starts a private Redis Cluster of three masters with one
// replica each, for failover tests.
func NewRedisClusterWithReplicas(t testing.TB) *RedisCluster {
	return redistest.NewRedisClusterWithReplicas(t)
}
