package e2e_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestFaultRollingRestart: three instances replaced one after the other under load
// (start the new one, take the old one out of rotation, SIGTERM): nothing lost or
// twice, and each old one exits within BRIDGE_SHUTDOWN_TIMEOUT.
func TestFaultRollingRestart(t *testing.T) {
	for _, noIDs := range []bool{false, true} {
		t.Run(map[bool]string{false: "message ids", true: "no message ids"}[noIDs], func(t *testing.T) {
			r := newRig(t, faultOpts{instances: 3, noIDs: noIDs})
			r.load.await(t, faultWarmup)
			r.faultStarts()
			for i, old := range r.fleet.list() {
				env := map[string]string{"BRIDGE_INSTANCE_ID": fmt.Sprintf("e2e%s2", old.Name)}
				for k, v := range r.env {
					if k != "BRIDGE_INSTANCE_ID" {
						env[k] = v
					}
				}
				p := startProc(t, old.Name+"2", env)
				apptest.Eventually(t, procStartTimeout, p.Name+" ready", func() bool { return readyz(p) == http.StatusOK })
				r.fleet.add(p)
				r.fleet.remove(old)
				took := old.term(t)
				t.Logf("instance %d (%s) exited %s after SIGTERM", i, old.Name, took.Round(time.Millisecond))
				if took > faultShutdownTimeout {
					t.Errorf("%s exited %s after SIGTERM, want within BRIDGE_SHUTDOWN_TIMEOUT %s", old.Name, took, faultShutdownTimeout)
				}
			}
			r.faultEnds()
			r.verdictNoLoss(t, r.finish(t))
		})
	}
}
