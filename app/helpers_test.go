package app_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
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
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
