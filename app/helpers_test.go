package app_test

import (
	"testing"

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
