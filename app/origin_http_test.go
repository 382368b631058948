package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// httpRoute is one of the HTTP client routes, called as a browser page would: the token
// in ?token= (EventSource cannot set headers) and the page's Origin.
type httpRoute struct {
	name, method, path, body string
	ok                       int
}

var httpRoutes = []httpRoute{
	{"sse", http.MethodGet, "/sse", "", http.StatusOK},
	{"poll", http.MethodGet, "/poll?wait=1s", "", http.StatusOK},
	{"send", http.MethodPost, "/api/send", `{"routingKey":"chat","data":"hi"}`, http.StatusAccepted},
}

// call makes the request with token (none when "") from origin (none when "") and
// returns the status and headers; a stream's body is dropped once the status is known.
func (r httpRoute) call(t *testing.T, base, token, origin string) (int, http.Header) {
	t.Helper()
	u, err := url.Parse(base + r.path)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		v := u.Query()
		v.Set("token", token)
		u.RawQuery = v.Encode()
	}
	req, err := http.NewRequest(r.method, u.String(), strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestCrossSiteHTTP: SSE, poll and send refuse a foreign page (403, no CORS headers,
// before the token is looked at), let an allowed one in with the CORS headers its
// EventSource or fetch needs, and let in a request without an Origin (not a browser page).
func TestCrossSiteHTTP(t *testing.T) {
	const allowed = "https://app.example"
	s := authServer(t, map[string]string{"BRIDGE_ALLOWED_ORIGINS": allowed})
	tok := hs256(t, "u1", nil)
	for _, r := range httpRoutes {
		t.Run(r.name, func(t *testing.T) {
			cases := []struct {
				name, token, origin string
				want                int
				cors                bool
			}{
				{"foreign origin", tok, "https://evil.example", http.StatusForbidden, false},
				{"foreign origin, no token", "", "https://evil.example", http.StatusForbidden, false},
				{"null origin", tok, "null", http.StatusForbidden, false},
				{"allowed origin", tok, allowed, r.ok, true},
				{"allowed origin, no token", "", allowed, http.StatusUnauthorized, true}, // the page can read why
				{"no origin", tok, "", r.ok, false},
			}
			for _, tc := range cases {
				status, h := r.call(t, s.URL, tc.token, tc.origin)
				if status != tc.want {
					t.Errorf("%s: got %d, want %d", tc.name, status, tc.want)
				}
				acao, acac := h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials")
				switch {
				case tc.cors && (acao != tc.origin || acac != "true" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin")):
					t.Errorf("%s: CORS headers %q %q Vary %q, want the origin, true and Vary: Origin", tc.name, acao, acac, h.Values("Vary"))
				case !tc.cors && acao != "":
					t.Errorf("%s: Access-Control-Allow-Origin %q, want none", tc.name, acao)
				}
			}
		})
	}
	t.Run("send preflight", func(t *testing.T) {
		preflight := httpRoute{"preflight", http.MethodOptions, "/api/send", "", 0}
		if status, _ := preflight.call(t, s.URL, "", "https://evil.example"); status != http.StatusForbidden {
			t.Errorf("foreign preflight: got %d, want 403", status)
		}
		status, h := preflight.call(t, s.URL, "", allowed)
		if status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != allowed ||
			h.Get("Access-Control-Allow-Methods") != "POST" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("allowed preflight: got %d %v, want 204 allowing POST with Authorization", status, h)
		}
	})
}

// TestSameOriginHTTP: with BRIDGE_ALLOWED_ORIGINS unset, only the server's own origin passes.
func TestSameOriginHTTP(t *testing.T) {
	s := authServer(t, nil)
	tok := hs256(t, "u1", nil)
	for _, r := range httpRoutes {
		if status, _ := r.call(t, s.URL, tok, "https://evil.example"); status != http.StatusForbidden {
			t.Errorf("%s from a foreign origin: got %d, want 403", r.name, status)
		}
		if status, h := r.call(t, s.URL, tok, "http://"+s.Addr); status != r.ok || h.Get("Access-Control-Allow-Origin") != "http://"+s.Addr {
			t.Errorf("%s from the same origin: got %d, want %d with CORS headers", r.name, status, r.ok)
		}
	}
}

// TestWildcardOriginWithoutCookies: BRIDGE_ALLOWED_ORIGINS=* lets any page in with a
// token it holds, but never tells the browser it may send the user's cookie along
// (Access-Control-Allow-Credentials), unless the origin is also named.
func TestWildcardOriginWithoutCookies(t *testing.T) {
	s := authServer(t, map[string]string{"BRIDGE_ALLOWED_ORIGINS": "*, https://app.example"})
	tok := hs256(t, "u1", nil)
	for _, r := range httpRoutes {
		for origin, creds := range map[string]string{"https://any.example": "", "https://app.example": "true"} {
			status, h := r.call(t, s.URL, tok, origin)
			if status != r.ok || h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Allow-Credentials") != creds {
				t.Errorf("%s from %s: got %d, ACAO %q, ACAC %q; want %d, the origin, %q", r.name, origin, status,
					h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"), r.ok, creds)
			}
		}
	}
}
