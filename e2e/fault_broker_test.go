package e2e_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestFaultBrokerGone: the instances' AMQP connections cut (through the test's proxy;
// the node and other tests' connections are untouched) for 10 s mid-flow: nothing lost
// or twice, /readyz 503 on every instance during the cut and 200 within 10 s after.
func TestFaultBrokerGone(t *testing.T) {
	for _, noIDs := range []bool{false, true} {
		t.Run(map[bool]string{false: "message ids", true: "no message ids"}[noIDs], func(t *testing.T) {
			// The instances reconnect with the broker backoff (up to 10 s) and 10 s of
			// messages queued in RabbitMQ are ahead of the first new one: its bound is
			// the readiness bound, not resumeWithin.
			r := newRig(t, faultOpts{noIDs: noIDs, resumeWithin: readyBack})
			r.load.await(t, faultWarmup)
			r.faultStarts()
			r.amqp.Down()
			for _, p := range r.fleet.list() {
				apptest.Eventually(t, brokerGone, p.Name+" /readyz 503 while the broker is gone", func() bool {
					return readyz(p) == http.StatusServiceUnavailable
				})
			}
			hold(brokerGone - time.Since(r.faultAt))
			for _, p := range r.fleet.list() {
				if got := readyz(p); got != http.StatusServiceUnavailable {
					t.Errorf("%s /readyz %d at the end of the cut, want 503", p.Name, got)
				}
			}
			r.amqp.Up(t)
			r.faultEnds()
			for _, p := range r.fleet.list() {
				apptest.Eventually(t, readyBack-time.Since(r.endAt), p.Name+" /readyz 200 after the broker is back", func() bool {
					return readyz(p) == http.StatusOK
				})
			}
			t.Logf("every instance ready %s after the broker came back", time.Since(r.endAt).Round(10*time.Millisecond))
			r.verdictNoLoss(t, r.finish(t))
		})
	}
}

// brokerGone is how long the instances' link to RabbitMQ is cut.
const brokerGone = 10 * time.Second

// readyBack is how soon after the broker is back every instance must be ready again.
const readyBack = 10 * time.Second
