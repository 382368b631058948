package e2e_test

import (
	"testing"
)

// TestFaultPresenceDeleted: one instance's presence is deleted and one new client
// (a poll, as in issue 11) attaches there right after: the instance's other users
// must still get their messages once its presence heals.
func TestFaultPresenceDeleted(t *testing.T) {
	r := newRig(t, faultOpts{})
	a := r.fleet.list()[0]
	id := instanceID(t, a)
	r.load.await(t, faultWarmup)
	r.faultStarts()
	keys := deleteInstancePresence(t, r.redis, id)
	r.addClient(t, "fnew", "poll", 0)
	r.faultEnds()
	t.Logf("deleted the presence of %s (%s): %s", a.Name, id, shortKeys(r.redis, keys))
	r.verdict(t, r.finish(t))
}
