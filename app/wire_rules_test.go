package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestSameOriginComparesScheme: with the default same-origin rule, a page is the same
// origin only with the scheme the browser used to reach us too (TLS here, or the
// proxy's X-Forwarded-Proto): a plain-http page of the same host is a foreign origin
// to the https site, on WebSocket and HTTP routes alike.
func TestSameOriginComparesScheme(t *testing.T) {
	s := authServer(t, nil)
	tok := hs256(t, "u1", nil)
	for _, tc := range []struct {
		origin, proto string
		ok            bool
	}{
		{"http://" + s.Addr, "", true},
		{"https://" + s.Addr, "", false}, // we serve plain http here
		{"https://" + s.Addr, "https", true},
		{"http://" + s.Addr, "https", false}, // an http page against the https site
		{"HTTPS://" + s.Addr, "https", true},
	} {
		h := http.Header{"Authorization": {"Bearer " + tok}, "Origin": {tc.origin}}
		if tc.proto != "" {
			h.Set("X-Forwarded-Proto", tc.proto)
		}
		want := map[bool]int{true: http.StatusSwitchingProtocols, false: http.StatusForbidden}[tc.ok]
		if got := dialStatus(t, s.WSURL("/ws"), h); got != want {
			t.Errorf("WebSocket, Origin %s, X-Forwarded-Proto %q: got %d, want %d", tc.origin, tc.proto, got, want)
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/poll", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.StatusCode == http.StatusOK; got != tc.ok {
			t.Errorf("poll, Origin %s, X-Forwarded-Proto %q: got %d, want allowed %v", tc.origin, tc.proto, resp.StatusCode, tc.ok)
		}
	}
}

// TestSendNeedsJSON: POST /api/send (and /api/ack, /api/pong) takes only application/json, so a cross-site page
// cannot send on the user's cookie with a simple request (text/plain, a form, multipart)
// that needs no preflight — not even with BRIDGE_ALLOWED_ORIGINS=*. Nothing refused is sent.
func TestSendNeedsJSON(t *testing.T) {
	s := apptest.Start(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_INBOUND": "broadcast", "BRIDGE_ALLOWED_ORIGINS": "*"})
	watch := apptest.DialWS(t, s.WSURL("/ws/yxd/watch"), "", nil)
	apptest.Eventually(t, 5*time.Second, "watcher registered", func() bool { return connCount(t, s) == 1 })
	body := `{"data":"from a form"}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonx"} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/send?user=victim", strings.NewReader(body))
		req.Header.Set("Origin", "https://evil.example")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: got %d %s, want 415", ct, resp.StatusCode, msg)
		}
	}
	for path, body := range map[string]string{"/api/ack": `{"ids":["1"]}`, "/api/pong": `{"token":"ab.1"}`} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+path+"?user=victim", strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("POST %s as text/plain: %v %v, want 415", path, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/send?user=victim", strings.NewReader(`{"data":"json"}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("application/json: got %d, want 202", resp.StatusCode)
	}
	if f := watch.Next(t, 10*time.Second); string(f.Data) != "victim : json" {
		t.Errorf("watcher got %q first, want only the JSON send", f.Data)
	}
}

// TestInboundKeys: clients send only with the routing keys BRIDGE_INBOUND_KEYS allows —
// by default only "inbound" in broadcast mode — and never with a key this gateway
// consumes, whatever the list says; a list naming such a key refuses to start.
func TestInboundKeys(t *testing.T) {
	try := func(t *testing.T, s *apptest.Server, key string) (status int) {
		t.Helper()
		body := `{"data":"x"}`
		if key != "" {
			body = `{"routingKey":"` + key + `","data":"x"}`
		}
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/send?user=u", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bindings := "queue_contract=contract"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]int // routing key -> status
	}{
		{"broadcast, default", map[string]string{"BRIDGE_INBOUND": "broadcast"},
			map[string]int{"": 202, "inbound": 202, "chat": 403, "contract": 403}},
		{"broadcast, a list", map[string]string{"BRIDGE_INBOUND": "broadcast", "BRIDGE_INBOUND_KEYS": "inbound, chat"},
			map[string]int{"": 202, "chat": 202, "other": 403, "contract": 403}},
		{"broadcast, any", map[string]string{"BRIDGE_INBOUND": "broadcast", "BRIDGE_INBOUND_KEYS": "*"},
			map[string]int{"chat": 202, "anything": 202, "contract": 403}},
		{"broker, a list", map[string]string{"BRIDGE_INBOUND": "broker", "BRIDGE_INBOUND_KEYS": "from_clients"},
			map[string]int{"other": 403, "inbound": 403, "contract": 403}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"BRIDGE_DEV": "1", "BRIDGE_BINDINGS": bindings}
			for k, v := range tc.env {
				env[k] = v
			}
			s := apptest.Start(t, env)
			for key, want := range tc.want {
				if got := try(t, s, key); got != want {
					t.Errorf("routing key %q: got %d, want %d", key, got, want)
				}
			}
			// Topics follow: in broadcast mode a client may subscribe to the keys
			// clients send with, and to no other.
			if tc.env["BRIDGE_INBOUND"] == "broadcast" && tc.env["BRIDGE_INBOUND_KEYS"] == "" {
				if got := get(t, s, "/poll?user=u&topics=chat"); got != http.StatusUnprocessableEntity {
					t.Errorf("subscribe to a key nobody sends with: got %d, want 422", got)
				}
				if got := get(t, s, "/poll?user=u&topics=inbound,contract"); got != http.StatusOK {
					t.Errorf("subscribe to inbound and contract: got %d, want 200", got)
				}
			}
		})
	}
	err, _, _ := runCmd(t, map[string]string{"BRIDGE_DEV": "1", "BRIDGE_BINDINGS": bindings, "BRIDGE_INBOUND_KEYS": "inbound,contract"}, "serve")
	if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_INBOUND_KEYS: ") || !strings.Contains(err.Error(), `"contract"`) {
		t.Errorf("a consumed key in the list: got %v, want a refusal naming BRIDGE_INBOUND_KEYS and the key", err)
	}
}

// TestTopicsAfterAuth: a bad ?topics= says what the gateway consumes only to a client
// that got in: before that, the answer is the auth refusal, on every transport.
func TestTopicsAfterAuth(t *testing.T) {
	s := authServer(t, nil) // BRIDGE_BINDINGS: one queue, key "contract"
	tok := hs256(t, "u1", nil)
	for _, path := range []string{"/sse", "/poll", "/ws"} {
		for _, tc := range []struct {
			auth string
			want int
		}{
			{"", http.StatusUnauthorized},
			{"Bearer not-a-token", http.StatusUnauthorized},
			{"Bearer " + tok, http.StatusUnprocessableEntity},
		} {
			req, _ := http.NewRequest(http.MethodGet, s.URL+path+"?topics=no-such-key", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s, %q: got %d %s, want %d", path, tc.auth, resp.StatusCode, b, tc.want)
			}
			if tc.want == http.StatusUnauthorized && strings.Contains(string(b), "contract") {
				t.Errorf("%s, %q: the refusal names a consumed routing key: %s", path, tc.auth, b)
			}
		}
	}
}
