package e2e_test

import (
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestMultiProcessOnRedisCluster runs the representative multi-process tests against
// a private 3-master Redis Cluster in the default run (each on its own key prefix of
// one cluster): exactly once across three instances (smaller than the shared-Redis
// run), kill -9 of one instance while messages flow, and a resume on another
// instance. Every multi-process test runs on a cluster with -args -e2e.redis=cluster,
// every fault test with -args -faults.redis=cluster.
func TestMultiProcessOnRedisCluster(t *testing.T) {
	c := apptest.NewRedisCluster(t)
	t.Run("exactly once", func(t *testing.T) { clusterExactlyOnce(t, c.Env(), false, 60, 50, 50) })
	t.Run("kill -9", func(t *testing.T) { killOneInstance(t, c.Env()) })
	t.Run("resume on another instance", func(t *testing.T) { killBeforeFirstMessage(t, c.Env()) })
}

// TestFaultOnRedisCluster runs one fault scenario on a private 3-master Redis Cluster
// in the default run: every master paused 5 s under load from a publisher without
// message ids (the one that found go-redis's cluster client resending timed-out
// appends). Every fault test runs on a cluster with -args -faults.redis=cluster.
func TestFaultOnRedisCluster(t *testing.T) {
	t.Run("redis paused 5s, no message ids", func(t *testing.T) { pausedNoIDs(t, "cluster") })
}
