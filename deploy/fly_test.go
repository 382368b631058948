package deploy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// flyConfig is the part of fly.toml the tests check.
type flyConfig struct {
	KillSignal  string            `toml:"kill_signal"`
	KillTimeout flyDuration       `toml:"kill_timeout"`
	Env         map[string]string `toml:"env"`
	VM          []struct {
		Size     string `toml:"size"`
		Memory   string `toml:"memory"`
		MemoryMB int64  `toml:"memory_mb"`
	} `toml:"vm"`
	HTTPService struct {
		InternalPort       int `toml:"internal_port"`
		AutoStopMachines   any `toml:"auto_stop_machines"` // "off", "stop", "suspend" or a bool
		MinMachinesRunning int `toml:"min_machines_running"`
		Concurrency        struct {
			Type      string `toml:"type"`
			SoftLimit int    `toml:"soft_limit"`
			HardLimit int    `toml:"hard_limit"`
		} `toml:"concurrency"`
		Checks []flyCheck `toml:"checks"`
	} `toml:"http_service"`
	Checks map[string]flyCheck `toml:"checks"`
}

type flyCheck struct {
	Type string `toml:"type"`
	Port int    `toml:"port"`
	Path string `toml:"path"`
}

// flyDuration is a fly.toml duration: a string like "15s", or a number of seconds.
type flyDuration time.Duration

func (d *flyDuration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*d = flyDuration(time.Duration(v) * time.Second)
		return nil
	case string:
		p, err := time.ParseDuration(v)
		*d = flyDuration(p)
		return err
	}
	return fmt.Errorf("%v is not a duration", v)
}

func readFly(t *testing.T) *flyConfig {
	t.Helper()
	var f flyConfig
	if _, err := toml.DecodeFile(filepath.Join(repoRoot, "fly.toml"), &f); err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	return &f
}

func TestFlyManifest(t *testing.T) {
	bin, d := imageBinary(t)
	cfg := readSettings(t, bin)
	f := readFly(t)
	cfg.checkEnv(t, "fly.toml [env]", f.Env)
	hs := f.HTTPService

	t.Run("port", func(t *testing.T) {
		p := hs.InternalPort
		checkPort(t, "internal_port vs the config's default PORT", p, port(t, "PORT default", cfg["PORT"]))
		checkPort(t, "internal_port vs the Dockerfile's ENV PORT", p, port(t, "Dockerfile PORT", d.Env["PORT"]))
		if v, ok := f.Env["PORT"]; ok {
			checkPort(t, "[env] PORT", port(t, "[env] PORT", v), p)
		}
		for name, c := range f.Checks {
			checkPort(t, "[checks."+name+"] port", c.Port, p)
		}
	})

	t.Run("checks", func(t *testing.T) {
		// The proxy routes by the service's checks: a draining or cut-off machine must
		// get no new connections.
		if !slices.ContainsFunc(hs.Checks, func(c flyCheck) bool { return c.Path == "/readyz" }) {
			t.Errorf("[[http_service.checks]] has no check of /readyz")
		}
		if !slices.ContainsFunc(slices.Collect(maps.Values(f.Checks)), func(c flyCheck) bool { return c.Type == "http" && c.Path == "/healthz" }) {
			t.Errorf("[checks] has no http check of /healthz")
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		if f.KillSignal != "SIGTERM" && f.KillSignal != "SIGINT" {
			t.Errorf("kill_signal = %q: the server drains on SIGTERM or SIGINT only", f.KillSignal)
		}
		drain, kill := cfg.duration(t, f.Env, "BRIDGE_SHUTDOWN_TIMEOUT"), time.Duration(f.KillTimeout)
		if drain+exitMargin > kill {
			t.Errorf("kill_timeout %s < BRIDGE_SHUTDOWN_TIMEOUT %s + %s to exit: Fly would kill a drain", kill, drain, exitMargin)
		}
	})

	t.Run("consumer always on", func(t *testing.T) {
		if a := hs.AutoStopMachines; a != "off" && a != false {
			t.Errorf("auto_stop_machines = %v, want \"off\": an idle machine still consumes", a)
		}
		if hs.MinMachinesRunning < 1 {
			t.Errorf("min_machines_running = %d, want >= 1", hs.MinMachinesRunning)
		}
	})

	t.Run("sizing", func(t *testing.T) {
		c := hs.Concurrency
		if c.Type != "requests" {
			t.Errorf("concurrency type %q, want requests: a stream is one request for its whole life however the browser multiplexes, and requests in flight are what the app cannot make room from", c.Type)
		}
		if c.SoftLimit <= 0 || c.SoftLimit > c.HardLimit {
			t.Errorf("soft_limit %d, want in 1..hard_limit (%d)", c.SoftLimit, c.HardLimit)
		}
		maxConns := cfg.int(t, f.Env, "BRIDGE_MAX_CONNS")
		checkUnder(t, "hard_limit", c.HardLimit, maxConns)
		if len(f.VM) != 1 {
			t.Fatalf("%d [[vm]] sections, want 1: the limits are derived from its memory", len(f.VM))
		}
		mem := f.VM[0].MemoryMB << 20
		if f.VM[0].Memory != "" {
			var err error
			if mem, err = parseBytes(f.VM[0].Memory); err != nil {
				t.Fatalf("[[vm]] memory: %v", err)
			}
		}
		if mem == 0 {
			t.Fatalf("[[vm]] sets no memory: the limits are derived from it")
		}
		checkFits(t, "BRIDGE_MAX_CONNS", maxConns, mem, flyReserve, f.Env["GOMEMLIMIT"])
	})

	t.Run("serves", func(t *testing.T) {
		var paths []string
		for _, c := range slices.Concat(hs.Checks, slices.Collect(maps.Values(f.Checks))) {
			paths = append(paths, c.Path)
		}
		checkServes(t, bin, d, f.Env, paths)
	})
}
