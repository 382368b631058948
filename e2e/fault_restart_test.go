package e2e_test

import (
	"testing"
)

// TestFaultRedisRestartedEmpty: Redis killed and started again at once without its
// data (no persistence; on a cluster, the master holding most of the test's keys):
// clients hold cursors of a history that is gone.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	r := newRig(t, faultOpts{})
	r.load.await(t, faultWarmup)
	r.faultStarts()
	r.redis.restartEmpty(t)
	r.faultEnds()
	r.verdict(t, r.finish(t))
}
