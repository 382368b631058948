package e2e_test

import (
	"testing"
)

// TestFaultRedisRefusesWrites: Redis out of memory (maxmemory below its use, no
// eviction) for twice BRIDGE_PRESENCE_TTL: reads work, every write fails.
func TestFaultRedisRefusesWrites(t *testing.T) {
	r := newRig(t, faultOpts{})
	r.load.await(t, faultWarmup)
	r.faultStarts()
	r.redis.refuseWrites(t)
	hold(2 * faultPresenceTTL)
	r.redis.allowWrites(t)
	r.faultEnds()
	r.verdict(t, r.finish(t))
}
