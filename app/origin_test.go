package app_test

import (
	"net/http"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

func withOrigin(h http.Header, origin string) http.Header {
	if h == nil {
		h = http.Header{}
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return h
}

// TestCrossSiteUpgrade: a page on a foreign origin cannot open a WebSocket, even with
// the user's cookie attached (cross-site WebSocket hijacking); the allowed origin can.
func TestCrossSiteUpgrade(t *testing.T) {
	tok := hs256(t, "u1", nil)
	cookie := http.Header{"Cookie": {"bridge_token=" + tok}}
	t.Run("allowed origins set", func(t *testing.T) {
		s := authServer(t, map[string]string{"BRIDGE_ALLOWED_ORIGINS": "https://app.example, https://admin.example/"})
		cases := []struct {
			origin string
			want   int
		}{
			{"https://evil.example", http.StatusForbidden},
			{"https://app.example.evil.example", http.StatusForbidden},
			{"http://app.example", http.StatusForbidden}, // scheme is part of the origin
			{"null", http.StatusForbidden},               // a sandboxed frame or a file
			{"https://app.example", http.StatusSwitchingProtocols},
			{"https://admin.example", http.StatusSwitchingProtocols},
			{"", http.StatusSwitchingProtocols}, // not a browser: no cross-site risk
		}
		for _, tc := range cases {
			for _, path := range []string{"/ws", "/ws/yxd/u1"} {
				if got := dialStatus(t, s.WSURL(path), withOrigin(cookie.Clone(), tc.origin)); got != tc.want {
					t.Errorf("%s from Origin %q: got %d, want %d", path, tc.origin, got, tc.want)
				}
			}
		}
	})
	t.Run("default same origin", func(t *testing.T) {
		s := authServer(t, nil)
		if got := dialStatus(t, s.WSURL("/ws"), withOrigin(cookie.Clone(), "https://evil.example")); got != http.StatusForbidden {
			t.Errorf("foreign origin: got %d, want 403", got)
		}
		if got := dialStatus(t, s.WSURL("/ws"), withOrigin(cookie.Clone(), "http://"+s.Addr)); got != http.StatusSwitchingProtocols {
			t.Errorf("same origin: got %d, want 101", got)
		}
	})
	t.Run("a foreign origin is refused before the token is looked at", func(t *testing.T) {
		s := authServer(t, nil)
		if got := dialStatus(t, s.WSURL("/ws"), withOrigin(nil, "https://evil.example")); got != http.StatusForbidden {
			t.Errorf("foreign origin without a token: got %d, want 403", got)
		}
	})
}

// TestDevOrigins: dev mode takes any origin (a page opened from a file or another port)
// unless BRIDGE_ALLOWED_ORIGINS is set, which is then enforced as in production.
func TestDevOrigins(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"AMQP_URL": apptest.AMQPURL(), "BRIDGE_DEV": "1"}
	for k, v := range tp.Env {
		env[k] = v
	}
	open := apptest.Start(t, env)
	if got := dialStatus(t, open.WSURL("/ws/yxd/1"), withOrigin(nil, "null")); got != http.StatusSwitchingProtocols {
		t.Errorf("dev, no allowed origins, Origin null: got %d, want 101", got)
	}
	env["BRIDGE_ALLOWED_ORIGINS"] = "http://localhost:3000"
	closed := apptest.Start(t, env)
	if got := dialStatus(t, closed.WSURL("/ws/yxd/1"), withOrigin(nil, "https://evil.example")); got != http.StatusForbidden {
		t.Errorf("dev with allowed origins, foreign Origin: got %d, want 403", got)
	}
	if got := dialStatus(t, closed.WSURL("/ws/yxd/1"), withOrigin(nil, "http://localhost:3000")); got != http.StatusSwitchingProtocols {
		t.Errorf("dev with allowed origins, allowed Origin: got %d, want 101", got)
	}
}
