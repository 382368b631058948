package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestPprofAddrRefusals: -pprof takes host:port on loopback; anything that would open
// the profiles to the network is refused at start unless explicitly allowed.
func TestPprofAddrRefusals(t *testing.T) {
	for _, tc := range []struct {
		env []string
		ok  bool
	}{
		{[]string{"BRIDGE_PPROF", "127.0.0.1:6060"}, true},
		{[]string{"BRIDGE_PPROF", "[::1]:6060"}, true},
		{[]string{"BRIDGE_PPROF", "localhost:6060"}, true},
		{[]string{"BRIDGE_PPROF", ":6060"}, false},
		{[]string{"BRIDGE_PPROF", "0.0.0.0:6060"}, false},
		{[]string{"BRIDGE_PPROF", "10.1.2.3:6060"}, false},
		{[]string{"BRIDGE_PPROF", "6060"}, false},
		{[]string{"BRIDGE_PPROF", "0.0.0.0:6060", "BRIDGE_PPROF_ALLOW_REMOTE", "true"}, true},
		{[]string{"BRIDGE_PPROF", "0.0.0.0:6060", "BRIDGE_PPROF_ALLOW_REMOTE", "sure"}, false},
	} {
		t.Run(strings.Join(tc.env, " "), func(t *testing.T) {
			c, err := parseConfig(nil, envOf(append([]string{"BRIDGE_DEV", "1"}, tc.env...)...), io.Discard)
			if tc.ok && (err != nil || c.PprofAddr != tc.env[1]) {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_PPROF")) {
				t.Fatalf("answered %v, want an error naming BRIDGE_PPROF", err)
			}
		})
	}
	if _, err := parseConfig([]string{"-pprof", ":6060"}, envOf("BRIDGE_DEV", "1"), io.Discard); err == nil {
		t.Fatal("-pprof :6060 accepted, want a refusal")
	}
}

// TestPprofServesProfilesOnly: the listener serves net/http/pprof and nothing of the
// gateway.
func TestPprofServesProfilesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := startPprof(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) int {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get("/debug/pprof/goroutine?debug=1"); s != http.StatusOK {
		t.Errorf("/debug/pprof/goroutine answered %d", s)
	}
	if s := get("/metrics"); s != http.StatusNotFound {
		t.Errorf("/metrics on the pprof listener answered %d, want 404", s)
	}
}
