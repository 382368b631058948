package app_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestReadinessTellsTheTruthAboutRedis: /readyz is 503 while Redis refuses writes (a
// full Redis with noeviction) and 200 again once it takes them; while the relay is
// lost (Redis paused) it is 503 too, and after the relay has been gone for three
// presence TTLs the clients are told to reconnect elsewhere instead of waiting
// silently (issue 11, item 4). On a Redis of the test's own.
func TestReadinessTellsTheTruthAboutRedis(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewPrivateRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_PRESENCE_TTL": "1s"}
	for _, m := range []map[string]string{tp.Env, rds.Env()} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)
	apptest.Eventually(t, 10*time.Second, "ready", func() bool { return get(t, s, "/readyz") == http.StatusOK })

	rds.RefuseWrites(t)
	apptest.Eventually(t, 10*time.Second, "503 while Redis refuses writes", func() bool { return get(t, s, "/readyz") == http.StatusServiceUnavailable })
	rds.AllowWrites(t)
	apptest.Eventually(t, 10*time.Second, "ready once Redis takes writes", func() bool { return get(t, s, "/readyz") == http.StatusOK })

	c := apptest.DialWS(t, s.WSURL("/ws?user=waiting"), "bridge.v1", nil)
	if f := nextV1(t, c); f.Type != "welcome" {
		t.Fatalf("first frame %+v, want a welcome", f)
	}
	rds.Pause(t)
	paused := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			rds.Resume(t)
		}
	}()
	apptest.Eventually(t, 10*time.Second, "503 while Redis is paused", func() bool { return get(t, s, "/readyz") == http.StatusServiceUnavailable })
	// The relay notices the silence within two of its pings (10 s), then waits three
	// TTLs before the hint.
	raw := c.Next(t, 30*time.Second)
	var f serverFrame
	if json.Unmarshal(raw.Data, &f) != nil || f.Type != "reconnect" {
		t.Fatalf("got %q, want a reconnect frame once the relay was lost", raw.Data)
	}
	t.Logf("reconnect hint %s after the pause", time.Since(paused).Round(time.Second))
	rds.Resume(t)
	resumed = true
	apptest.Eventually(t, 20*time.Second, "ready after Redis came back", func() bool { return get(t, s, "/readyz") == http.StatusOK })
}

// TestReadinessFollowsADispatch: a dispatch that Redis refuses (a full Redis with
// noeviction) turns /readyz 503 at once, not at the next heartbeat (here a minute's
// TTL: beats every 20 s), and the next dispatch that goes through turns it back. On a
// Redis of the test's own.
func TestReadinessFollowsADispatch(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewPrivateRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_PRESENCE_TTL": "60s"}
	for _, m := range []map[string]string{tp.Env, rds.Env()} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)
	apptest.Eventually(t, 10*time.Second, "ready", func() bool { return get(t, s, "/readyz") == http.StatusOK })
	c := apptest.DialWS(t, s.WSURL("/ws?user=ready"), "bridge.v1", nil)
	if f := nextV1(t, c); f.Type != "welcome" {
		t.Fatalf("first frame %+v, want a welcome", f)
	}

	rds.RefuseWrites(t)
	refused := time.Now()
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"ready","n":1}`), nil)
	// Well inside the 20 s until the next beat.
	apptest.Eventually(t, 5*time.Second, "503 after a refused dispatch", func() bool { return get(t, s, "/readyz") == http.StatusServiceUnavailable })
	t.Logf("503 %s after Redis began refusing writes", time.Since(refused).Round(time.Millisecond))
	rds.AllowWrites(t)
	// The held delivery is dispatched again after a pause; its success makes it ready.
	apptest.Eventually(t, 5*time.Second, "ready after a dispatch went through", func() bool { return get(t, s, "/readyz") == http.StatusOK })
	raw := c.Next(t, 10*time.Second)
	var f serverFrame
	if json.Unmarshal(raw.Data, &f) != nil || f.Type != "message" {
		t.Fatalf("got %q, want the message once Redis took it", raw.Data)
	}
}
