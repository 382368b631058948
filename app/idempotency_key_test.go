package app_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// postKeyed posts body to s's /api/publish with an Idempotency-Key header (none when
// key is empty) and returns the answer.
func postKeyed(t *testing.T, s *apptest.Server, key, body string) *apptest.Response {
	t.Helper()
	var h http.Header
	if key != "" {
		h = http.Header{"Idempotency-Key": {key}}
	}
	resp, err := apptest.PostWith(s.URL+"/api/publish", testAPIKey, []byte(body), h)
	if err != nil {
		t.Fatalf("POST /api/publish: %v", err)
	}
	return resp
}

// TestIdempotencyKeyPublishesOnce, in every mode: the same Idempotency-Key posted
// twice publishes one message, which the client gets once, and answers the same 202
// body twice, the key being the message id. The same key with another body is 422;
// malformed keys are 400.
func TestIdempotencyKeyPublishesOnce(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.with(map[string]string{"BRIDGE_API_KEY": testAPIKey}))
		c := apptest.DialWS(t, s.WSURL("/ws/yxd/7"), "", nil)
		apptest.Eventually(t, 5*time.Second, "client registered", func() bool { return connCount(t, s) == 1 })

		body := `{"routingKey":"contract","userId":"7","data":{"order":42}}`
		first := postKeyed(t, s, "order-42", body)
		if first.Status != http.StatusAccepted || !strings.Contains(string(first.Body), `"id":"order-42"`) {
			t.Fatalf("first: %d %s, want 202 with the key as id", first.Status, first.Body)
		}
		second := postKeyed(t, s, `"order-42"`, body) // the IETF draft's quoted form is the same key
		if second.Status != first.Status || string(second.Body) != string(first.Body) {
			t.Fatalf("second: %d %q, want the first answer again: %d %q", second.Status, second.Body, first.Status, first.Body)
		}
		if second.Header.Get("Idempotent-Replayed") != "true" || first.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("Idempotent-Replayed: first %q, second %q, want only the second marked", first.Header.Get("Idempotent-Replayed"), second.Header.Get("Idempotent-Replayed"))
		}
		if resp := postKeyed(t, s, "order-42", `{"routingKey":"contract","userId":"7","data":{"order":43}}`); resp.Status != http.StatusUnprocessableEntity {
			t.Errorf("same key, another body: %d %s, want 422", resp.Status, resp.Body)
		}
		for name, key := range map[string]string{
			"empty": `""`, "space": "a b", "non-ASCII": "clé", "backslash": `a\b`, "too long": strings.Repeat("k", 256),
		} {
			if resp := postKeyed(t, s, key, body); resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), "Idempotency-Key") {
				t.Errorf("%s key: %d %s, want 400 naming Idempotency-Key", name, resp.Status, resp.Body)
			}
		}
		if resp := postKeyed(t, s, strings.Repeat("k", 255), body); resp.Status != http.StatusAccepted {
			t.Errorf("255-byte key: %d %s, want 202", resp.Status, resp.Body)
		}

		if f := c.Next(t, 10*time.Second); string(f.Data) != `{"order":42}` {
			t.Fatalf("client got %q, want the message", f.Data)
		}
		if f := c.Next(t, 10*time.Second); string(f.Data) != `{"order":42}` {
			t.Fatalf("client got %q, want the 255-byte key's message", f.Data)
		}
		m.publish(t, "contract", []byte(`{"receiveUserId":"7","end":true}`), "")
		if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"7","end":true}` {
			t.Fatalf("client got %q, want the end (a second copy came first?)", f.Data)
		}
		// Published once, not published twice and deduplicated by the consumer.
		if acked, dups := counted(t, "pushbridge_deliveries_acked_total", 3, s), metric(t, s, "pushbridge_deliveries_duplicate_total"); acked != 3 || dups != 0 {
			t.Errorf("acked %v with %v duplicates, want 3 (two keys, the end) and 0", acked, dups)
		}
	})
}

// TestIdempotencyKeyAcrossInstances: two instances sharing Redis answer one key the
// same, whichever gets the request, and concurrent requests with one key spread over
// both publish once.
func TestIdempotencyKeyAcrossInstances(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_API_KEY": testAPIKey}
	for _, m := range []map[string]string{tp.Env, rds.Env} {
		for k, v := range m {
			env[k] = v
		}
	}
	a, b := apptest.Start(t, env), apptest.Start(t, env)
	c := apptest.DialWS(t, a.WSURL("/ws/yxd/9"), "", nil)
	apptest.Eventually(t, 5*time.Second, "client registered", func() bool { return connCount(t, a) == 1 })

	body := `{"routingKey":"contract","userId":"9","data":{"n":1}}`
	first, second := postKeyed(t, a, "k-1", body), postKeyed(t, b, "k-1", body)
	if first.Status != http.StatusAccepted || second.Status != first.Status || string(second.Body) != string(first.Body) {
		t.Fatalf("instance A answered %d %q, B %d %q: want the same 202", first.Status, first.Body, second.Status, second.Body)
	}

	const n = 12
	answers := make([]*apptest.Response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := []*apptest.Server{a, b}[i%2]
		wg.Go(func() {
			answers[i], errs[i] = apptest.PostWith(s.URL+"/api/publish", testAPIKey,
				[]byte(`{"routingKey":"contract","userId":"9","data":{"n":2}}`), http.Header{"Idempotency-Key": {"k-2"}})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || answers[i].Status != http.StatusAccepted || string(answers[i].Body) != string(answers[0].Body) {
			t.Fatalf("concurrent request %d: %v %+v, want the same 202 as request 0 (%s)", i, errs[i], answers[i], answers[0].Body)
		}
	}

	// The two keys' messages may be consumed by different instances, so either may
	// be numbered first (the queue's competing consumers keep no order between them).
	got := []string{string(c.Next(t, 10*time.Second).Data), string(c.Next(t, 10*time.Second).Data)}
	slices.Sort(got)
	if got[0] != `{"n":1}` || got[1] != `{"n":2}` {
		t.Fatalf("client got %q, want {\"n\":1} and {\"n\":2} once each", got)
	}
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"9","end":true}`), nil)
	if f := c.Next(t, 10*time.Second); string(f.Data) != `{"receiveUserId":"9","end":true}` {
		t.Fatalf("client got %q, want the end (a second copy came first?)", f.Data)
	}
	acked := counted(t, "pushbridge_deliveries_acked_total", 3, a, b)
	dups := metric(t, a, "pushbridge_deliveries_duplicate_total") + metric(t, b, "pushbridge_deliveries_duplicate_total")
	if acked != 3 || dups != 0 {
		t.Errorf("acked %v with %v duplicates over both instances, want 3 and 0 (a key published more than once)", acked, dups)
	}
}
