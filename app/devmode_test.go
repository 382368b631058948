package app_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestDevRefusals: dev mode never starts by accident — not beside a client auth
// setting (it would silently ignore it) and not on a hosting platform — and each
// refusal is one line that names the variable, whichever way dev mode was asked for.
func TestDevRefusals(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("any"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"JWT secret", map[string]string{"BRIDGE_JWT_SECRET": testSecret}, "BRIDGE_JWT_SECRET"},
		{"key file", map[string]string{"BRIDGE_JWT_PUBLIC_KEY_FILE": keyFile}, "BRIDGE_JWT_PUBLIC_KEY_FILE"},
		{"JWKS URL", map[string]string{"BRIDGE_JWT_JWKS_URL": "https://idp.example/.well-known/jwks.json"}, "BRIDGE_JWT_JWKS_URL"},
		{"secret and JWKS", map[string]string{"BRIDGE_JWT_SECRET": testSecret, "BRIDGE_JWT_JWKS_URL": "https://idp.example/jwks"}, "BRIDGE_JWT_SECRET and BRIDGE_JWT_JWKS_URL"},
		{"on Fly.io", map[string]string{"FLY_ALLOC_ID": "148e21ea"}, "FLY_ALLOC_ID"},
		{"on Cloud Run", map[string]string{"K_SERVICE": "pushbridge"}, "K_SERVICE"},
	} {
		for _, how := range []string{"-dev", "BRIDGE_DEV=1"} {
			t.Run(tc.name+" "+how, func(t *testing.T) {
				env := map[string]string{}
				for k, v := range tc.env {
					env[k] = v
				}
				args := []string{"serve"}
				if how == "-dev" {
					args = append(args, "-dev")
				} else {
					env["BRIDGE_DEV"] = "1"
				}
				err, stdout, _ := runCmd(t, env, args...)
				if err == nil {
					t.Fatalf("started (%q), want a refusal naming %s", stdout, tc.want)
				}
				if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, "-dev") || strings.Contains(msg, "\n") {
					t.Errorf("got %q, want one line naming %s and -dev", msg, tc.want)
				}
			})
		}
	}
	// Without dev mode, a platform is where the server belongs.
	apptest.Start(t, map[string]string{"BRIDGE_JWT_SECRET": testSecret, "K_SERVICE": "pushbridge", "FLY_ALLOC_ID": "148e21ea"})
}

var listenAddr = regexp.MustCompile(`msg=listening .*?addr=(\S+)`)

// TestDevListensOnLoopback: a dev server listens on loopback only unless BRIDGE_LISTEN
// names an address, so `go run . -dev` on a laptop is not open to its network; a
// production server listens on every interface.
func TestDevListensOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		loopback bool // else every interface
	}{
		{"dev", map[string]string{"BRIDGE_DEV": "1"}, true},
		{"dev, BRIDGE_LISTEN=0.0.0.0", map[string]string{"BRIDGE_DEV": "1", "BRIDGE_LISTEN": "0.0.0.0"}, false},
		{"dev, BRIDGE_LISTEN=:0", map[string]string{"BRIDGE_DEV": "1", "BRIDGE_LISTEN": ":0"}, false},
		{"production", map[string]string{"BRIDGE_JWT_SECRET": testSecret}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := apptest.Start(t, tc.env)
			m := listenAddr.FindStringSubmatch(s.Stderr.String())
			if m == nil {
				t.Fatalf("no listening line in the log:\n%s", s.Stderr.String())
			}
			host, _, err := net.SplitHostPort(m[1])
			if err != nil {
				t.Fatal(err)
			}
			ip := net.ParseIP(host)
			if ip == nil || ip.IsLoopback() != tc.loopback || !tc.loopback && !ip.IsUnspecified() {
				t.Errorf("listens on %s, want loopback %v (else every interface)", m[1], tc.loopback)
			}
			if ip := otherAddress(t); ip != "" && tc.loopback {
				_, port, _ := net.SplitHostPort(s.Addr)
				if c, err := net.Dial("tcp", net.JoinHostPort(ip, port)); err == nil {
					c.Close()
					t.Errorf("reachable on %s, want loopback only", ip)
				}
			}
		})
	}
}

// otherAddress is an IPv4 address of this machine that is not loopback, "" if none.
func otherAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// TestDevModeShows: /readyz's body and the pushbridge_dev_mode metric say whether the
// server runs in dev mode.
func TestDevModeShows(t *testing.T) {
	for _, tc := range []struct {
		env    map[string]string
		mode   string
		metric float64
	}{
		{map[string]string{"BRIDGE_DEV": "1"}, "dev", 1},
		{map[string]string{"BRIDGE_JWT_SECRET": testSecret}, "production", 0},
	} {
		s := apptest.Start(t, tc.env)
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || body["mode"] != tc.mode || body["status"] != "ready" {
			t.Errorf("/readyz: %v %v, want status ready and mode %s", body, err, tc.mode)
		}
		if tc.mode == "dev" && !strings.Contains(body["warning"], "not authenticated") {
			t.Errorf("/readyz in dev mode: %v, want a warning that clients are not authenticated", body)
		}
		if got := metric(t, s, "pushbridge_dev_mode"); got != tc.metric {
			t.Errorf("pushbridge_dev_mode = %v, want %v", got, tc.metric)
		}
	}
}
