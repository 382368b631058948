package e2e_test

import (
	"testing"
	"time"
)

// failoverTimeout bounds the wait for a replica to take over: the node timeout (5 s),
// the election, and the other nodes hearing of it, on shared CPUs.
const failoverTimeout = 30 * time.Second

// failoverResumeWithin is resumeWithin for a failover: once the replica serves the
// slots, each instance has to learn the new slot map (at its next failed dispatch, or
// within 5 s) and its relay to subscribe on the new master.
const failoverResumeWithin = 10 * time.Second

// TestFaultClusterFailover: a Redis Cluster of three masters with one replica each;
// under load, the master holding most of the test's keys is killed (SIGKILL) or
// paused (SIGSTOP) past the node timeout, and its replica takes over. Replication is
// asynchronous, so the replica may lack the last writes: the run-id refence
// (docs/redis.md) starts new epochs on it, and a client whose position the replica
// never saw gets a reset. Every client gets every message or a reset: nothing lost
// silently, nothing twice. A paused master that continues finds itself a replica.
func TestFaultClusterFailover(t *testing.T) {
	t.Run("master killed", func(t *testing.T) { clusterFailover(t, false) })
	t.Run("master paused", func(t *testing.T) { clusterFailover(t, true) })
}

func clusterFailover(t *testing.T, pause bool) {
	r := newRig(t, faultOpts{redis: "cluster-replicas", resumeWithin: failoverResumeWithin})
	cr := r.redis.(*clusterRedis)
	r.load.await(t, faultWarmup)
	m := cr.busiestMaster(t, 0)
	from := 0
	if m == 0 {
		from = 1
	}
	r.faultStarts()
	if pause {
		cr.c.Pause(t, m)
	} else {
		cr.c.Kill(m)
	}
	cr.c.WaitFailover(t, m, failoverTimeout)
	t.Logf("master %s failed over in %s; masters now %v", cr.c.Addrs[m], time.Since(r.faultAt).Round(100*time.Millisecond), cr.c.Masters(t, from))
	if pause {
		cr.c.Resume(t, m)
	}
	r.faultEnds()
	r.verdict(t, r.finish(t))
}
