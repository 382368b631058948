package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestShortAPIKeyRefused: outside dev mode a BRIDGE_API_KEY under 24 bytes stops the
// start with one line naming it; 24 bytes start, and dev mode takes any key.
func TestShortAPIKeyRefused(t *testing.T) {
	for _, key := range []string{"k", "e2e-key", strings.Repeat("x", 23)} {
		err, _, _ := runCmd(t, map[string]string{"BRIDGE_JWT_SECRET": testSecret, "BRIDGE_API_KEY": key}, "serve")
		if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_API_KEY: use at least 24 bytes") || strings.Contains(err.Error(), "\n") {
			t.Errorf("a %d-byte key: got %v, want one line refusing BRIDGE_API_KEY", len(key), err)
		}
	}
	apptest.Start(t, map[string]string{"BRIDGE_JWT_SECRET": testSecret, "BRIDGE_API_KEY": strings.Repeat("x", 24)})
	apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_API_KEY": "k"})
}

// TestJWKSWithoutAudienceWarns: a JWKS without an audience or an issuer to hold tokens
// to starts, with a loud warning naming each missing setting; with both, no warning.
func TestJWKSWithoutAudienceWarns(t *testing.T) {
	idp := newFakeIdP(t, rsaJWK("k1", newRSA(t)))
	for _, tc := range []struct {
		env  map[string]string
		warn []string
	}{
		{map[string]string{}, []string{"BRIDGE_JWT_AUDIENCE", "BRIDGE_JWT_ISSUER"}},
		{map[string]string{"BRIDGE_JWT_AUDIENCE": testAudience}, []string{"BRIDGE_JWT_ISSUER"}},
		{map[string]string{"BRIDGE_JWT_ISSUER": testIssuer}, []string{"BRIDGE_JWT_AUDIENCE"}},
		{map[string]string{"BRIDGE_JWT_AUDIENCE": testAudience, "BRIDGE_JWT_ISSUER": testIssuer}, nil},
	} {
		tc.env["BRIDGE_JWT_JWKS_URL"] = idp.url()
		s := apptest.Start(t, tc.env)
		log := s.Stderr.String()
		for _, name := range []string{"BRIDGE_JWT_AUDIENCE", "BRIDGE_JWT_ISSUER"} {
			line := "level=WARN msg=\"SECURITY: BRIDGE_JWT_JWKS_URL is used without " + name
			want := strings.Contains(strings.Join(tc.warn, " "), name)
			if got := strings.Contains(log, line); got != want {
				t.Errorf("env %v: warning about %s: got %v, want %v\n%s", tc.env, name, got, want, log)
			}
		}
	}
}

// TestMetricsKey: with BRIDGE_METRICS_KEY set, /metrics answers only its bearer — not
// the API key, not a wrong key, not nobody.
func TestMetricsKey(t *testing.T) {
	const key = "metrics-key-for-the-scraper"
	s := apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_METRICS_KEY": key, "BRIDGE_API_KEY": testAPIKey})
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + testAPIKey, http.StatusUnauthorized},
		{"Basic " + key, http.StatusUnauthorized},
		{"Bearer " + key, http.StatusOK},
		{"bearer " + key, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: got %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "pushbridge_connections ") {
			t.Errorf("Authorization %q: no metrics in the answer", tc.auth)
		}
		if tc.want != http.StatusOK && strings.Contains(string(body), "pushbridge_") {
			t.Errorf("Authorization %q: metrics leaked in a %d answer", tc.auth, resp.StatusCode)
		}
	}
}
