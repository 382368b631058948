package app_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestMetricsAreDocumented: every pushbridge_ metric an instance exposes is named in
// docs/metrics.md, and the by-transport gauges count what is connected.
func TestMetricsAreDocumented(t *testing.T) {
	s, tp := rabbitServer(t, nil)
	ws := apptest.DialWS(t, s.WSURL("/ws?user=m"), "", nil)
	apptest.OpenSSE(t, s.URL+"/sse?user=m", nil)
	apptest.Eventually(t, wait, "2 connections", func() bool { return connCount(t, s) == 2 })
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"m"}`), nil)
	ws.Next(t, wait)
	if n := metric(t, s, "pushbridge_dispatch_seconds_count"); n < 1 {
		t.Errorf("pushbridge_dispatch_seconds_count = %v after a delivery, want at least 1", n)
	}
	// The relay hands the message to the hub before the hub sends it: counted by now.
	if n := metric(t, s, "pushbridge_relay_lag_seconds_count"); n != 1 {
		t.Errorf("pushbridge_relay_lag_seconds_count = %v after one relayed message, want 1", n)
	}
	for tr, want := range map[string]float64{"ws": 1, "sse": 1, "poll": 0} {
		if got := metric(t, s, `pushbridge_transport_connections{transport="`+tr+`"}`); got != want {
			t.Errorf("%s connections: %v, want %v", tr, got, want)
		}
	}

	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`(?m)^# HELP (pushbridge_\w+)`).FindAllSubmatch(body, -1)
	if len(names) == 0 {
		t.Fatal("no pushbridge_ metrics exposed")
	}
	for _, n := range names {
		if !regexp.MustCompile("`" + string(n[1]) + "[`{]").Match(doc) {
			t.Errorf("%s is exposed but not in docs/metrics.md", n[1])
		}
	}
}
