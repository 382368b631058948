package e2e_test

import (
	"testing"
)

// TestFaultRedisPaused: Redis stopped (SIGSTOP) for twice BRIDGE_PRESENCE_TTL, so every
// presence entry lapses while messages keep coming.
func TestFaultRedisPaused(t *testing.T) {
	r := newRig(t, faultOpts{})
	r.load.await(t, faultWarmup)
	r.faultStarts()
	r.redis.pause(t)
	hold(2 * faultPresenceTTL)
	r.redis.resume(t)
	r.faultEnds()
	r.verdict(t, r.finish(t))
}
