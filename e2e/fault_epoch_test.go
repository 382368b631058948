package e2e_test

import (
	"testing"
)

// TestFaultEpochDeleted: only what numbers the history is deleted (the first design's
// global counter, the streams' epochs in the second), the messages stay.
func TestFaultEpochDeleted(t *testing.T) {
	r := newRig(t, faultOpts{})
	r.load.await(t, faultWarmup)
	r.faultStarts()
	keys := deleteEpochs(t, r.redis)
	r.faultEnds()
	t.Logf("deleted %d keys: %s", len(keys), shortKeys(r.redis, keys))
	r.verdict(t, r.finish(t))
}
