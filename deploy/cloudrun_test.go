package deploy

import (
	"os"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// What Cloud Run imposes, from its documentation.
const (
	// cloudRunKillGrace: after SIGTERM, Cloud Run sends SIGKILL 10 s later; not settable.
	cloudRunKillGrace = 10 * time.Second
	// cloudRunMaxConcurrency is the highest containerConcurrency Cloud Run accepts.
	cloudRunMaxConcurrency = 1000
	// cloudRunRequestTimeout is what the issue asks: Cloud Run's longest request, so a
	// WebSocket or SSE stream lives up to an hour.
	cloudRunRequestTimeout = 3600
)

// knativeService is the part of deploy/cloudrun.yaml the tests check.
type knativeService struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				ContainerConcurrency int         `yaml:"containerConcurrency"`
				TimeoutSeconds       int         `yaml:"timeoutSeconds"`
				Containers           []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Ports []struct {
		ContainerPort int `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
}

func readCloudRun(t *testing.T) (*knativeService, *container) {
	t.Helper()
	b, err := os.ReadFile("cloudrun.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s knativeService
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatalf("deploy/cloudrun.yaml: %v", err)
	}
	if s.APIVersion != "serving.knative.dev/v1" || s.Kind != "Service" {
		t.Fatalf("deploy/cloudrun.yaml is %s %s, want a serving.knative.dev/v1 Service", s.APIVersion, s.Kind)
	}
	if n := len(s.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("deploy/cloudrun.yaml has %d containers, want 1", n)
	}
	return &s, &s.Spec.Template.Spec.Containers[0]
}

func TestCloudRunManifest(t *testing.T) {
	bin, d := imageBinary(t)
	cfg := readSettings(t, bin)
	s, c := readCloudRun(t)
	spec, ann := s.Spec.Template.Spec, s.Spec.Template.Metadata.Annotations

	env := map[string]string{} // the plain values; the secrets apart
	secrets := map[string]bool{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != "":
			secrets[e.Name] = true
		case e.ValueFrom != nil:
			t.Errorf("%s: valueFrom without a Secret Manager secret (secretKeyRef name and key)", e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	cfg.checkEnv(t, "deploy/cloudrun.yaml", env)
	for _, k := range secretEnv {
		if !secrets[k] {
			t.Errorf("%s is not read from Secret Manager (valueFrom.secretKeyRef)", k)
		}
	}
	for k := range secrets {
		if _, ok := cfg[k]; !ok {
			t.Errorf("secret %s is a variable the config does not know", k)
		}
	}

	t.Run("port", func(t *testing.T) {
		if _, ok := env["PORT"]; ok {
			t.Errorf("env sets PORT: Cloud Run reserves it and sets it from containerPort")
		}
		if len(c.Ports) != 1 {
			t.Fatalf("%d ports, want 1", len(c.Ports))
		}
		p := c.Ports[0].ContainerPort
		checkPort(t, "containerPort vs the config's default PORT", p, port(t, "PORT default", cfg["PORT"]))
		checkPort(t, "containerPort vs the Dockerfile's ENV PORT", p, port(t, "Dockerfile PORT", d.Env["PORT"]))
		for _, pr := range []*probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if pr != nil && pr.HTTPGet != nil && pr.HTTPGet.Port != 0 {
				checkPort(t, "probe port "+pr.HTTPGet.Path, pr.HTTPGet.Port, p)
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		for _, pr := range []struct {
			kind string
			p    *probe
			want string
		}{
			{"startupProbe", c.StartupProbe, "/healthz"},   // started = listening
			{"livenessProbe", c.LivenessProbe, "/healthz"}, // never fails for a dependency
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
		} {
			if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.want {
				t.Errorf("%s: want httpGet %s", pr.kind, pr.want)
			}
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		drain := cfg.duration(t, env, "BRIDGE_SHUTDOWN_TIMEOUT")
		if drain+exitMargin > cloudRunKillGrace {
			t.Errorf("BRIDGE_SHUTDOWN_TIMEOUT %s + %s to exit > the %s Cloud Run waits after SIGTERM", drain, exitMargin, cloudRunKillGrace)
		}
	})

	t.Run("long-lived connections", func(t *testing.T) {
		if spec.TimeoutSeconds != cloudRunRequestTimeout {
			t.Errorf("timeoutSeconds = %d, want %d", spec.TimeoutSeconds, cloudRunRequestTimeout)
		}
		if age := cfg.duration(t, env, "BRIDGE_MAX_CONNECTION_AGE"); age >= time.Duration(spec.TimeoutSeconds)*time.Second {
			t.Errorf("BRIDGE_MAX_CONNECTION_AGE %s is not under the request timeout %ds: Cloud Run would cut streams without a reconnect hint", age, spec.TimeoutSeconds)
		}
		if a := ann["run.googleapis.com/sessionAffinity"]; a != "" && a != "false" {
			t.Errorf("sessionAffinity %q: not needed, a client resumes on any instance", a)
		}
	})

	t.Run("consumer always on", func(t *testing.T) {
		if n, err := strconv.Atoi(ann["autoscaling.knative.dev/minScale"]); err != nil || n < 1 {
			t.Errorf("autoscaling.knative.dev/minScale = %q, want >= 1: the consumer runs without browsers", ann["autoscaling.knative.dev/minScale"])
		}
		if v := ann["run.googleapis.com/cpu-throttling"]; v != "false" {
			t.Errorf("run.googleapis.com/cpu-throttling = %q, want \"false\": deliveries arrive outside requests", v)
		}
	})

	t.Run("sizing", func(t *testing.T) {
		cc := spec.ContainerConcurrency
		if cc > cloudRunMaxConcurrency {
			t.Errorf("containerConcurrency = %d, Cloud Run accepts at most %d", cc, cloudRunMaxConcurrency)
		}
		maxConns := cfg.int(t, env, "BRIDGE_MAX_CONNS")
		checkUnder(t, "containerConcurrency", cc, maxConns)
		mem, err := parseBytes(c.Resources.Limits["memory"])
		if err != nil {
			t.Fatalf("resources.limits.memory: %v", err)
		}
		checkFits(t, "BRIDGE_MAX_CONNS", maxConns, mem, cloudRunReserve, env["GOMEMLIMIT"])
	})

	t.Run("serves", func(t *testing.T) {
		var paths []string
		for _, pr := range []*probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if pr != nil && pr.HTTPGet != nil {
				paths = append(paths, pr.HTTPGet.Path)
			}
		}
		checkServes(t, bin, d, env, paths)
	})
}
