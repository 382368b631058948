package deploy

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goRuntimeEnv are variables a manifest may set that the Go runtime reads, not
// app/config.go.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOGC": true}

// secretEnv are the variables that carry credentials: set by the platform's secret
// store, never written in a manifest.
var secretEnv = []string{"REDIS_URL", "AMQP_URL", "BRIDGE_JWT_SECRET", "BRIDGE_API_KEY"}

// helpSetting is one line of `pushbridge serve -h`: "...; env NAME (default X)".
var helpSetting = regexp.MustCompile(`; env ([A-Z][A-Z0-9_]*)(?: \(default (.*)\))?$`)

// settings are the variables the config knows and their defaults, as the binary itself
// lists them: every flag of serve names its variable (app/config.go).
type settings map[string]string

func readSettings(t *testing.T, bin string) settings {
	t.Helper()
	out, err := exec.Command(bin, "serve", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s serve -h: %v\n%s", bin, err, out)
	}
	s := settings{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := helpSetting.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			s[m[1]] = m[2]
		}
	}
	for _, need := range []string{"PORT", "BRIDGE_SHUTDOWN_TIMEOUT", "BRIDGE_MAX_CONNECTION_AGE", "BRIDGE_MAX_CONNS"} {
		if _, ok := s[need]; !ok {
			t.Fatalf("serve -h names no %s; its form changed?\n%s", need, out)
		}
	}
	return s
}

// value is name's value under env: env's own, else the config's default.
func (s settings) value(env map[string]string, name string) string {
	if v, ok := env[name]; ok && v != "" {
		return v
	}
	return s[name]
}

func (s settings) duration(t *testing.T, env map[string]string, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s.value(env, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func (s settings) int(t *testing.T, env map[string]string, name string) int {
	t.Helper()
	n, err := strconv.Atoi(s.value(env, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// checkEnv fails for a variable the config does not know (a typo is otherwise silently
// ignored) and for a credential written in the manifest.
func (s settings) checkEnv(t *testing.T, manifest string, env map[string]string) {
	t.Helper()
	for k := range env {
		if _, ok := s[k]; !ok && !goRuntimeEnv[k] {
			t.Errorf("%s sets %s, which the config does not know (serve -h)", manifest, k)
		}
	}
	for _, k := range secretEnv {
		if _, ok := env[k]; ok {
			t.Errorf("%s writes %s in plain text; it is a secret (the platform's secret store)", manifest, k)
		}
	}
}

// servingEnv is what a test instance runs with: the image's ENV, then the manifest's,
// then the test's own stand-ins for the secrets and its own RabbitMQ topology and Redis
// prefix (the shared services are never used under production names), on any port.
func servingEnv(image, manifest map[string]string, own ...map[string]string) map[string]string {
	env := map[string]string{}
	for _, m := range append([]map[string]string{image, manifest}, own...) {
		for k, v := range m {
			env[k] = v
		}
	}
	env["PORT"] = "0"
	return env
}

// port reads a PORT-like value.
func port(t *testing.T, what, v string) int {
	t.Helper()
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("%s = %q, want a port number", what, v)
	}
	return n
}

func checkPort(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}
