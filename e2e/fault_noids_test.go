package e2e_test

import (
	"testing"
	"time"
)

// TestFaultNoMessageIDs: a publisher that sets no AMQP message-id (the Spring default),
// then Redis paused 5 s, or one instance killed with -9, mid-flow: nothing lost and
// nothing twice for resuming clients (issue 12).
func TestFaultNoMessageIDs(t *testing.T) {
	t.Run("redis paused 5s", func(t *testing.T) { pausedNoIDs(t, "") })
	t.Run("instance killed", func(t *testing.T) {
		r := newRig(t, faultOpts{noIDs: true})
		r.load.await(t, faultWarmup)
		dead := r.fleet.list()[0]
		// Mid-flow: a backlog the instances are still consuming, so the one killed
		// holds deliveries it has dispatched but not acked.
		r.load.burst(t, killBurst)
		r.faultStarts()
		r.fleet.remove(dead)
		dead.kill(t)
		r.faultEnds()
		r.verdictNoLoss(t, r.finish(t))
	})
}

// killBurst is the backlog published at once before an instance is killed: a few
// seconds of consuming for two instances.
const killBurst = 3000

// pausedNoIDs is TestFaultNoMessageIDs's Redis pause on the Redis kind names (single
// or cluster, "": -faults.redis).
func pausedNoIDs(t *testing.T, kind string) {
	r := newRig(t, faultOpts{noIDs: true, redis: kind})
	r.load.await(t, faultWarmup)
	r.faultStarts()
	r.redis.pause(t)
	hold(5 * time.Second)
	r.redis.resume(t)
	r.faultEnds()
	r.verdictNoLoss(t, r.finish(t))
}
