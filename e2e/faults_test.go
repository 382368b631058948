package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// The fault suite of issues 11 and 12 (docs/faults.md), one fault per test in
// fault_*_test.go: two (or three) instances as real processes on a Redis of the test's
// own, 24 clients (WebSocket bridge.v1, SSE, poll) that resume as bridge.js does, and a
// publisher at 500 msg/s (faultrig_test.go). Each run logs, per client, what was lost
// (and whether a reset said so), duplicated and reordered; this file holds what every
// run asserts. -faults.redis=cluster runs them on a private Redis Cluster.

// verdict asserts what every fault run must show: nothing lost silently, nothing
// twice, nobody else's messages, and each client's delivery back within resumeWithin
// of the fault's end.
func (r *rig) verdict(t *testing.T, cs []counts) {
	t.Helper()
	var silent, dup, misdelivered, strays int
	var slow []string
	for i, c := range cs {
		silent += c.silent
		dup += c.dup
		misdelivered += c.misdelivered
		strays += c.strays
		if c.resumeAfter < 0 || c.resumeAfter > r.opts.resumeWithin {
			slow = append(slow, fmt.Sprintf("%s/%s (%v)", r.clients[i].user, r.clients[i].transport, c.resumeAfter))
		}
	}
	if silent > 0 {
		t.Errorf("%d messages lost silently (no reset told the client), want 0", silent)
	}
	if dup > 0 {
		t.Errorf("%d duplicate deliveries, want 0", dup)
	}
	if misdelivered > 0 || strays > 0 {
		t.Errorf("%d messages of other users and %d unexpected frames delivered, want 0", misdelivered, strays)
	}
	if len(slow) > 0 {
		t.Errorf("delivery did not resume within %s of the fault's end for %d clients (-1: never): %s",
			r.opts.resumeWithin, len(slow), strings.Join(slow, ", "))
	}
	for _, c := range r.clients {
		tl := c.snapshot()
		if len(tl.strays) > 0 {
			t.Logf("%s: %q", c.user, tl.strays[:min(3, len(tl.strays))])
		}
	}
}

// verdictNoLoss is verdict, and nothing lost at all, reset or not.
func (r *rig) verdictNoLoss(t *testing.T, cs []counts) {
	t.Helper()
	r.verdict(t, cs)
	lost, resets := 0, 0
	for _, c := range cs {
		lost += c.lost
		resets += c.resets
	}
	if lost > 0 {
		t.Errorf("%d messages lost (%d resets), want 0", lost, resets)
	}
}

// readyz is p's /readyz status, 0 when it does not answer.
func readyz(p *proc) int {
	resp, err := apptest.Get(p.URL+"/readyz", "")
	if err != nil {
		return 0
	}
	return resp.Status
}
