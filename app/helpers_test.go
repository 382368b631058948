package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// connCount reads pushbridge_connections from /metrics.
func connCount(t *testing.T, s *apptest.Server) int {
	t.Helper()
	return int(metric(t, s, "pushbridge_connections"))
}

// metric reads one unlabelled metric from /metrics.
func metric(t *testing.T, s *apptest.Server, name string) float64 {
	t.Helper()
	return s.Metric(t, name)
}

// counted is a counter's total over servers, read once it has reached want (the test
// fails if it does not within 10 s); the caller then checks it is exactly want. A
// delivery is counted after its dispatch returns, which can be after a client already
// got it, so reading the counter right after a client's last frame would race it.
func counted(t *testing.T, name string, want float64, servers ...*apptest.Server) float64 {
	t.Helper()
	sum := func() float64 {
		total := 0.0
		for _, s := range servers {
			total += s.Metric(t, name)
		}
		return total
	}
	apptest.Eventually(t, 10*time.Second, fmt.Sprintf("%s to reach %v", name, want), func() bool { return sum() >= want })
	return sum()
}
