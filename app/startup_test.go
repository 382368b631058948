package app_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
)

// runCmd runs the pushbridge command line with env and returns its error and output.
func runCmd(t *testing.T, env map[string]string, args ...string) (err error, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = app.Run(ctx, append([]string{"pushbridge"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return err, out.String(), errOut.String()
}

// TestStartRefusesWithoutAuth: a server that would let anyone in as anyone does not
// start unless asked to with -dev, and a half-made auth configuration says what is wrong.
func TestStartRefusesWithoutAuth(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(notPEM, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing", nil, "no client auth configured"},
		{"short secret", map[string]string{"BRIDGE_JWT_SECRET": "short"}, "BRIDGE_JWT_SECRET: use at least 16 bytes"},
		{"key file missing", map[string]string{"BRIDGE_JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"}, "BRIDGE_JWT_PUBLIC_KEY_FILE"},
		{"key file not PEM", map[string]string{"BRIDGE_JWT_PUBLIC_KEY_FILE": notPEM}, "not an RSA or ECDSA public key"},
		{"secret and key file", map[string]string{"BRIDGE_JWT_SECRET": testSecret, "BRIDGE_JWT_PUBLIC_KEY_FILE": notPEM}, "set together"},
		{"bad limit", map[string]string{"BRIDGE_DEV": "1", "BRIDGE_MAX_CONNS_PER_USER": "0"}, "BRIDGE_MAX_CONNS_PER_USER"},
		{"bad rate", map[string]string{"BRIDGE_DEV": "1", "BRIDGE_MESSAGE_RATE": "fast"}, "BRIDGE_MESSAGE_RATE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, _, _ := runCmd(t, tc.env, "serve")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDevModeWarns(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"AMQP_URL": apptest.AMQPURL()}
	for k, v := range tp.Env {
		env[k] = v
	}
	s := apptest.Start(t, env, "-dev")
	if log := s.Stderr.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "DEV MODE") {
		t.Errorf("no dev mode warning in the log:\n%s", log)
	}
	// And dev mode really is open: the id comes from the path.
	if got := dialStatus(t, s.WSURL("/ws/yxd/42"), nil); got != http.StatusSwitchingProtocols {
		t.Errorf("dev mode /ws/yxd/42 without a token: got %d, want 101", got)
	}
}

// TestGentokenToken: the token gentoken prints opens a server with the same secret (and
// audience and issuer), and no server with another secret.
func TestGentokenToken(t *testing.T) {
	env := map[string]string{"BRIDGE_JWT_SECRET": testSecret, "BRIDGE_JWT_AUDIENCE": testAudience, "BRIDGE_JWT_ISSUER": testIssuer}
	err, out, errOut := runCmd(t, env, "gentoken", "-user", "42", "-ttl", "5m")
	if err != nil {
		t.Fatalf("gentoken: %v\n%s", err, errOut)
	}
	tok := strings.TrimSpace(out)
	same := authServer(t, nil)
	if got := dialStatus(t, same.WSURL("/ws/yxd/42?token="+tok), nil); got != http.StatusSwitchingProtocols {
		t.Errorf("same secret: got %d, want 101", got)
	}
	other := authServer(t, map[string]string{"BRIDGE_JWT_SECRET": otherSecret})
	if got := dialStatus(t, other.WSURL("/ws/yxd/42?token="+tok), nil); got != http.StatusUnauthorized {
		t.Errorf("another secret: got %d, want 401", got)
	}
	if err, _, _ := runCmd(t, env, "gentoken", "-user", "bad\x00id"); err == nil {
		t.Errorf("gentoken accepted a user id with a NUL byte")
	}
}
