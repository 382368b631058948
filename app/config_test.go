package app

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/broker"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestConfigBadValues(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		env   []string
		names string // what the one line must start with
	}{
		{nil, []string{"PORT", "http"}, "PORT"},
		{nil, []string{"PORT", "65536"}, "PORT"},
		{nil, []string{"PORT", "-1"}, "PORT"},
		{nil, []string{"AMQP_URL", "http://localhost:5672"}, "AMQP_URL"},
		{nil, []string{"AMQP_URL", "::not a url"}, "AMQP_URL"},
		{nil, []string{"REDIS_URL", "localhost:6379"}, "REDIS_URL"},
		{nil, []string{"REDIS_URL", "redis+cluster://"}, "REDIS_URL"},
		{nil, []string{"REDIS_URL", "redis+cluster://a:7000,b"}, "REDIS_URL"},
		{nil, []string{"REDIS_URL", "rediss+cluster://a:7000/2"}, "REDIS_URL"},
		{nil, []string{"BRIDGE_BINDINGS", "queue_only"}, "BRIDGE_BINDINGS"},
		{nil, []string{"BRIDGE_BINDINGS", "=key"}, "BRIDGE_BINDINGS"},
		{nil, []string{"BRIDGE_BINDINGS", " , ,"}, "BRIDGE_BINDINGS"},
		{nil, []string{"BRIDGE_PREFETCH", "0"}, "BRIDGE_PREFETCH"},
		{nil, []string{"BRIDGE_PREFETCH", "lots"}, "BRIDGE_PREFETCH"},
		{nil, []string{"BRIDGE_JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem"}, "BRIDGE_JWT_PUBLIC_KEY_FILE"},
		{nil, []string{"BRIDGE_DEV", "maybe"}, "BRIDGE_DEV"},
		{nil, []string{"BRIDGE_HISTORY_SIZE", "0"}, "BRIDGE_HISTORY_SIZE"},
		{nil, []string{"BRIDGE_HISTORY_TTL", "forever"}, "BRIDGE_HISTORY_TTL"},
		{nil, []string{"BRIDGE_HISTORY_TTL", "10ms"}, "BRIDGE_HISTORY_TTL"},
		{nil, []string{"BRIDGE_PRESENCE_TTL", "0s"}, "BRIDGE_PRESENCE_TTL"},
		{nil, []string{"BRIDGE_HEARTBEAT", "1ms"}, "BRIDGE_HEARTBEAT"},
		{nil, []string{"BRIDGE_HEARTBEAT", "25"}, "BRIDGE_HEARTBEAT"},
		{nil, []string{"BRIDGE_SEND_QUEUE", "0"}, "BRIDGE_SEND_QUEUE"},
		{nil, []string{"BRIDGE_MAX_MESSAGE_BYTES", "10"}, "BRIDGE_MAX_MESSAGE_BYTES"},
		{nil, []string{"BRIDGE_MAX_MESSAGE_BYTES", "1e6"}, "BRIDGE_MAX_MESSAGE_BYTES"},
		{nil, []string{"BRIDGE_MAX_CONNECTION_AGE", "1h!"}, "BRIDGE_MAX_CONNECTION_AGE"},
		{nil, []string{"BRIDGE_INBOUND", "email"}, "BRIDGE_INBOUND"},
		{nil, []string{"BRIDGE_SHUTDOWN_TIMEOUT", "-1s"}, "BRIDGE_SHUTDOWN_TIMEOUT"},
		{[]string{"-port", "http"}, nil, "-port"},
		{[]string{"-send-queue", "none"}, []string{"BRIDGE_SEND_QUEUE", "8"}, "-send-queue"},
		{[]string{"-inbound", "mail"}, nil, "-inbound"},
	} {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			env := append([]string{"BRIDGE_DEV", "1"}, tc.env...)
			if tc.env != nil && tc.env[0] == "BRIDGE_DEV" {
				env = tc.env
			}
			_, err := parseConfig(tc.args, envOf(env...), io.Discard)
			if err == nil {
				t.Fatal("parseConfig accepted it, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.names+": ") || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line starting with %q", msg, tc.names+": ")
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want int
	}{
		{"default", nil, nil, 8080},
		{"env over default", nil, []string{"PORT", "9000"}, 9000},
		{"flag over env", []string{"-port", "9100"}, []string{"PORT", "9000"}, 9100},
		{"flag over a bad env value", []string{"-port", "9100"}, []string{"PORT", "oops"}, 9100},
		{"flag with =", []string{"-port=9200"}, nil, 9200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, envOf(append([]string{"BRIDGE_DEV", "1"}, tc.env...)...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Port != tc.want {
				t.Errorf("Port = %d, want %d", c.Port, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, envOf("BRIDGE_DEV", "1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wantBindings := []broker.Binding{
		{Queue: "queue_transaction", Key: "transaction"},
		{Queue: "queue_contract", Key: "contract"},
		{Queue: "queue_qualification", Key: "qualification"},
	}
	switch {
	case c.Exchange != "exchange_test":
		t.Errorf("Exchange = %q, want exchange_test", c.Exchange)
	case len(c.Bindings) != 3 || c.Bindings[0] != wantBindings[0] || c.Bindings[1] != wantBindings[1] || c.Bindings[2] != wantBindings[2]:
		t.Errorf("Bindings = %v, want %v", c.Bindings, wantBindings)
	case c.Inbound != "broker":
		t.Errorf("Inbound = %q, want broker", c.Inbound)
	case c.ShutdownTimeout != 10*time.Second:
		t.Errorf("ShutdownTimeout = %v, want 10s", c.ShutdownTimeout)
	case c.AMQPURL != "" || c.RedisURL != "":
		t.Errorf("AMQP_URL %q REDIS_URL %q, want both unset (in-process)", c.AMQPURL, c.RedisURL)
	case c.InstanceID == "":
		t.Error("InstanceID is empty, want a generated one")
	}
}

func TestConfigDevAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		dev     bool
		wantErr string
	}{
		{"no auth and no dev refuses to start", nil, nil, false, "no client auth configured"},
		{"dev flag", []string{"-dev"}, nil, true, ""},
		{"BRIDGE_DEV=1", nil, []string{"BRIDGE_DEV", "1"}, true, ""},
		{"BRIDGE_DEV=true", nil, []string{"BRIDGE_DEV", "true"}, true, ""},
		{"BRIDGE_DEV=0 without auth refuses", nil, []string{"BRIDGE_DEV", "0"}, false, "no client auth configured"},
		{"dev flag beats BRIDGE_DEV=0", []string{"-dev"}, []string{"BRIDGE_DEV", "0"}, true, ""},
		{"dev flag beats a bad BRIDGE_DEV", []string{"-dev"}, []string{"BRIDGE_DEV", "maybe"}, true, ""},
		{"-dev=false with BRIDGE_DEV=1 is production", []string{"-dev=false"}, []string{"BRIDGE_DEV", "1"}, false, "no client auth configured"},
		{"JWT secret is enough", nil, []string{"BRIDGE_JWT_SECRET", "0123456789abcdef"}, false, ""},
		{"JWT secret by flag", []string{"-jwt-secret", "0123456789abcdef"}, nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, envOf(tc.env...), io.Discard)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "-dev") {
					t.Fatalf("got %v, want an error containing %q that names -dev", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case c.Dev != tc.dev:
				t.Errorf("Dev = %v, want %v", c.Dev, tc.dev)
			}
		})
	}
}

func TestConfigArgs(t *testing.T) {
	if _, err := parseConfig([]string{"extra"}, envOf("BRIDGE_DEV", "1"), io.Discard); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Errorf("a stray argument: got %v, want an error naming it", err)
	}
	if _, err := parseConfig([]string{"-no-such-flag"}, envOf("BRIDGE_DEV", "1"), io.Discard); err == nil {
		t.Error("an unknown flag was accepted")
	}
	if _, err := parseConfig([]string{"-h"}, envOf(), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
}

func TestDefaultInstanceID(t *testing.T) {
	a, b := defaultInstanceID(envOf()), defaultInstanceID(envOf())
	if a == b || !strings.HasPrefix(a, "pb-") {
		t.Errorf("two starts got %q and %q, want distinct pb-… ids", a, b)
	}
	if id := defaultInstanceID(envOf("FLY_ALLOC_ID", "abc123")); !strings.HasPrefix(id, "abc123-") {
		t.Errorf("on Fly got %q, want the alloc id with a per-start suffix", id)
	}
	if id := defaultInstanceID(envOf("K_REVISION", "svc-00042")); !strings.HasPrefix(id, "svc-00042-") {
		t.Errorf("on Cloud Run got %q, want the revision first", id)
	}
}

// TestGivenInstanceIDGetsSuffix: a name given with BRIDGE_INSTANCE_ID is still a new
// instance at every start, so a restart never refreshes its predecessor's presence.
func TestGivenInstanceIDGetsSuffix(t *testing.T) {
	env := envOf("BRIDGE_DEV", "1", "BRIDGE_INSTANCE_ID", "edge-1")
	a, err := parseConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a.InstanceID == b.InstanceID || !strings.HasPrefix(a.InstanceID, "edge-1-") {
		t.Errorf("two starts got %q and %q, want distinct edge-1-… ids", a.InstanceID, b.InstanceID)
	}
	if _, err := parseConfig(nil, envOf("BRIDGE_DEV", "1", "BRIDGE_REDIS_PREFIX", "a*"), io.Discard); err == nil || !strings.Contains(err.Error(), "BRIDGE_REDIS_PREFIX") {
		t.Errorf("a glob in BRIDGE_REDIS_PREFIX: got %v, want an error naming it", err)
	}
}

// TestListenAddr: where the server listens, from BRIDGE_LISTEN, PORT and dev mode.
func TestListenAddr(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		want    string
		wantErr string
	}{
		{"production, default", nil, []string{"BRIDGE_JWT_SECRET", "0123456789abcdef"}, ":8080", ""},
		{"production, PORT", nil, []string{"BRIDGE_JWT_SECRET", "0123456789abcdef", "PORT", "9000"}, ":9000", ""},
		{"dev: loopback", nil, []string{"BRIDGE_DEV", "1"}, "127.0.0.1:8080", ""},
		{"dev: loopback on PORT", nil, []string{"BRIDGE_DEV", "1", "PORT", "9000"}, "127.0.0.1:9000", ""},
		{"dev: a host, PORT's port", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0", "PORT", "9000"}, "0.0.0.0:9000", ""},
		{"dev: host:port", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:8081"}, "0.0.0.0:8081", ""},
		{"dev: every interface", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", ":8081"}, ":8081", ""},
		{"IPv6 host", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "::1"}, "[::1]:8080", ""},
		{"IPv6 host in brackets", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "[::1]"}, "[::1]:8080", ""},
		{"IPv6 host:port", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "[::1]:8081"}, "[::1]:8081", ""},
		{"a host name", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "localhost"}, "localhost:8080", ""},
		{"same port twice", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:9000", "PORT", "9000"}, "0.0.0.0:9000", ""},
		{"flag", []string{"-listen", "0.0.0.0:8082"}, []string{"BRIDGE_DEV", "1"}, "0.0.0.0:8082", ""},
		{"two ports", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:9001", "PORT", "9000"}, "", "BRIDGE_LISTEN: its port 9001 contradicts PORT 9000"},
		{"two ports, by flag", []string{"-port", "9000"}, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:9001"}, "", "BRIDGE_LISTEN"},
		{"a bad port", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:http"}, "", "BRIDGE_LISTEN: "},
		{"a port too big", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "0.0.0.0:70000"}, "", "BRIDGE_LISTEN: "},
		{"not an address", nil, []string{"BRIDGE_DEV", "1", "BRIDGE_LISTEN", "http://0.0.0.0"}, "", "BRIDGE_LISTEN: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, envOf(tc.env...), io.Discard)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case c.listenAddr() != tc.want:
				t.Errorf("listenAddr() = %q, want %q", c.listenAddr(), tc.want)
			}
		})
	}
}
