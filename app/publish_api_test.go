package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

type publishAnswer struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// post sends a raw body to /api/publish and returns the status and decoded answer.
func post(t *testing.T, s *apptest.Server, key, body string) (int, publishAnswer) {
	t.Helper()
	resp, err := apptest.Post(s.URL+"/api/publish", key, []byte(body))
	if err != nil {
		t.Fatalf("POST /api/publish: %v", err)
	}
	var a publishAnswer
	if err := json.Unmarshal(resp.Body, &a); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.Status, resp.Body)
	}
	return resp.Status, a
}

func TestPublishAPIAnswers(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.with(map[string]string{"BRIDGE_API_KEY": testAPIKey, "BRIDGE_MAX_MESSAGE_BYTES": "1024"}))
		c := apptest.DialWS(t, s.WSURL("/ws/yxd/7"), "", nil)
		apptest.Eventually(t, 5*time.Second, "client registered", func() bool { return connCount(t, s) == 1 })

		status, a := post(t, s, testAPIKey, `{"routingKey":"contract","userId":"7","data":{"hello":"api"}}`)
		if status != http.StatusAccepted || a.ID == "" {
			t.Fatalf("publish: got %d %+v, want 202 with an id", status, a)
		}
		if f := c.Next(t, 10*time.Second); string(f.Data) != `{"hello":"api"}` {
			t.Fatalf("client got %q, want the published data", f.Data)
		}

		big := strings.Repeat("x", 2000)
		for _, tc := range []struct {
			name, key, body string
			want            int
		}{
			{"no queue bound to the key", testAPIKey, `{"routingKey":"nowhere","data":"x"}`, http.StatusNotFound},
			{"missing routingKey", testAPIKey, `{"data":"x"}`, http.StatusUnprocessableEntity},
			{"missing data", testAPIKey, `{"routingKey":"contract"}`, http.StatusUnprocessableEntity},
			{"null data", testAPIKey, `{"routingKey":"contract","data":null}`, http.StatusUnprocessableEntity},
			{"unknown field", testAPIKey, `{"routingKey":"contract","data":"x","extra":1}`, http.StatusUnprocessableEntity},
			{"malformed JSON", testAPIKey, `{"routingKey":"contract","data":`, http.StatusBadRequest},
			{"not JSON at all", testAPIKey, `routingKey=contract`, http.StatusBadRequest},
			{"empty body", testAPIKey, ``, http.StatusBadRequest},
			{"data over the limit", testAPIKey, `{"routingKey":"contract","data":"` + big + `"}`, http.StatusRequestEntityTooLarge},
			{"request over the limit", testAPIKey, `{"routingKey":"contract","data":"` + strings.Repeat(big, 4) + `"}`, http.StatusRequestEntityTooLarge},
			{"no API key", "", `{"routingKey":"contract","data":"x"}`, http.StatusUnauthorized},
			{"wrong API key", "nope", `{"routingKey":"contract","data":"x"}`, http.StatusUnauthorized},
		} {
			if status, a := post(t, s, tc.key, tc.body); status != tc.want || a.Error == "" {
				t.Errorf("%s: got %d %+v, want %d with an error message", tc.name, status, a, tc.want)
			}
		}
		// None of the refused ones reached the client: the next frame is this one.
		m.publish(t, "contract", []byte(`{"receiveUserId":"7","after":"refusals"}`), "")
		if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"7","after":"refusals"}` {
			t.Fatalf("client got %q, want only the last good message", f.Data)
		}
	})
}

// Returns and confirms of concurrent publishes must be matched to the right caller.
func TestPublishAPIConcurrentRoutableAndUnroutable(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.with(map[string]string{"BRIDGE_API_KEY": testAPIKey}))
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := range n {
			wg.Go(func() {
				key, want := "contract", http.StatusAccepted
				if i%2 == 1 {
					key, want = fmt.Sprintf("unbound-%d", i), http.StatusNotFound
				}
				resp, err := apptest.Post(s.URL+"/api/publish", testAPIKey, fmt.Appendf(nil, `{"routingKey":%q,"data":{"i":%d}}`, key, i))
				switch {
				case err != nil:
					errs <- err.Error()
				case resp.Status != want:
					errs <- fmt.Sprintf("publish %d to %s: got %d %s, want %d", i, key, resp.Status, resp.Body, want)
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

func TestPublishAPIWhileBrokerIsDown(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	proxy, amqpURL := apptest.AMQPProxy(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": amqpURL, "BRIDGE_API_KEY": testAPIKey}
	for k, v := range tp.Env {
		env[k] = v
	}
	s := apptest.Start(t, env)
	c := apptest.DialWS(t, s.WSURL("/ws/yxd/1"), "", nil)
	apptest.Eventually(t, 10*time.Second, "ready", func() bool { return get(t, s, "/readyz") == http.StatusOK })
	publishAndReceive := func(text string) {
		t.Helper()
		if err := s.PublishAPI(testAPIKey, "contract", []byte(text), "1"); err != nil {
			t.Fatal(err)
		}
		if f := c.Next(t, 10*time.Second); string(f.Data) != text {
			t.Fatalf("client got %q, want %q", f.Data, text)
		}
	}
	publishAndReceive("before the outage")

	proxy.Down()
	apptest.Eventually(t, 10*time.Second, "publish answers 503", func() bool {
		resp, err := apptest.Post(s.URL+"/api/publish", testAPIKey, []byte(`{"routingKey":"contract","data":"lost"}`))
		return err == nil && resp.Status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
	})
	if got := get(t, s, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("readyz while the broker is down: got %d, want 503", got)
	}
	if got := get(t, s, "/healthz"); got != http.StatusOK {
		t.Errorf("healthz while the broker is down: got %d, want 200 (the process is alive)", got)
	}

	proxy.Up(t)
	apptest.Eventually(t, 20*time.Second, "ready again after the broker returned", func() bool {
		return get(t, s, "/readyz") == http.StatusOK
	})
	publishAndReceive("after the outage")
	// A message published by a backend straight to RabbitMQ flows again too.
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"1","via":"amqp"}`), nil)
	if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"1","via":"amqp"}` {
		t.Fatalf("client got %q after reconnect, want the AMQP-published message", f.Data)
	}
}

// get returns the status of GET path on s.
func get(t *testing.T, s *apptest.Server, path string) int {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
