package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Timing of TestFrozenClientsLeave.
const (
	frozenHeartbeat = time.Second
	// frozenLimit is how long a frozen client may take to leave. The issue asks for two
	// heartbeats; the design's worst case is 1.5 (a WebSocket's readIdle, an SSE ping's
	// pongWait after the next ping; a poll's wait is at most one), and the test holds
	// it to that, plus frozenSlack: the gap between the checks (/metrics and a Redis read
	// through /api/presence, every few tens of ms), the detach's Redis delete and
	// scheduling on a loaded 2-core machine under -race. The old read deadline (two
	// periods after the client's last frame: 2.02 s here) does not pass.
	frozenLimit = 3*frozenHeartbeat/2 + frozenSlack
	frozenSlack = 400 * time.Millisecond
)

// TestFrozenClientsLeave: a client process stopped with SIGSTOP — its kernel still ACKs
// what we send and answers TCP keepalives, so no write fails — is gone from the hub and
// from the presence map in Redis within two heartbeats, on every transport, idle and
// while messages for it keep coming. A WebSocket is cut when our ping goes unanswered
// (readIdle), an SSE stream that opted in (?pong=1) when its ping event is not
// answered by POST /api/pong (or a write stalls for a heartbeat), and a poll's wait
// ends within a heartbeat. Before the stop, the same client, answering, stays.
func TestFrozenClientsLeave(t *testing.T) {
	rds := apptest.NewRedis(t)
	const apiKey = "frozen-test-api-key-0123456789abcdef"
	env := map[string]string{"BRIDGE_DEV": "1", "BRIDGE_HEARTBEAT": frozenHeartbeat.String(), "BRIDGE_API_KEY": apiKey}
	for k, v := range rds.Env {
		env[k] = v
	}
	s := apptest.Start(t, env)
	for _, tc := range []struct{ transport, load string }{
		{"ws", "idle"}, {"sse", "idle"}, {"poll", "idle"},
		{"ws", "loaded"}, {"sse", "loaded"}, {"poll", "loaded"},
	} {
		transport := tc.transport
		t.Run(transport+"/"+tc.load, func(t *testing.T) {
			user := "frozen-" + transport + "-" + tc.load
			in := func() (hub int, dir int) { return connCount(t, s), len(presenceOf(t, s, apiKey, user)) }
			proc := startFrozenClient(t, transport, s.URL, user)

			apptest.Eventually(t, 10*time.Second, "the client in the hub and the presence map", func() bool {
				h, d := in()
				return h == 1 && d == 1
			})
			if transport != "poll" { // a poll client is in them only while a poll waits
				// Answering, it stays: three heartbeats, each ping answered in time.
				for until := time.Now().Add(3 * frozenHeartbeat); time.Now().Before(until); {
					if h, d := in(); h != 1 || d != 1 {
						t.Fatalf("a client answering every ping left: hub %d, presence %d", h, d)
					}
					time.Sleep(50 * time.Millisecond) // sampling the state, not waiting for an event
				}
			}

			if err := proc.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			if tc.load == "loaded" {
				publishUntilDone(t, s, apiKey, user)
			}
			apptest.Eventually(t, 10*frozenHeartbeat, "the frozen client gone from the hub and the presence map", func() bool {
				h, d := in()
				return h == 0 && d == 0
			})
			took := time.Since(stopped)
			t.Logf("%s, %s: frozen client gone from hub and presence %s after SIGSTOP (heartbeat %s)", transport, tc.load, took.Round(time.Millisecond), frozenHeartbeat)
			if took > frozenLimit {
				t.Errorf("%s: gone after %s, want within 1.5 heartbeats plus slack, %s", transport, took, frozenLimit)
			}
			// Still frozen, it cannot come back: gone is gone.
			if h, d := in(); h != 0 || d != 0 {
				t.Errorf("%s: back after leaving: hub %d, presence %d", transport, h, d)
			}
		})
	}
}

// frozenLoadBody is the size of each message publishUntilDone sends, one after another
// as fast as the server takes them: the socket buffers to a frozen client fill, and the
// server's writes to it stall, well within a heartbeat.
const frozenLoadBody = 16 << 10

// publishUntilDone publishes messages for user through POST /api/publish, one after
// another, until the test ends: the load under which a frozen client must still leave.
func publishUntilDone(t *testing.T, s *apptest.Server, apiKey, user string) {
	t.Helper()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		body := []byte(`{"pad":"` + strings.Repeat("x", frozenLoadBody) + `"}`)
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := s.PublishAPI(apiKey, "contract", body, user); err != nil {
				t.Errorf("publish under load: %v", err)
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
}

// startFrozenClient runs this test binary as a client of transport (see TestMain);
// the test's end continues it if stopped and kills it.
func startFrozenClient(t *testing.T, transport, base, user string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s", frozenClientEnv, transport, base, user))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("client process: %s", stderr.String())
		}
	})
	return cmd
}

// presenceOf reads user's connections from the presence map (Redis) through GET
// /api/presence/:user.
func presenceOf(t *testing.T, s *apptest.Server, apiKey, user string) []json.RawMessage {
	t.Helper()
	var ans struct {
		Connections []json.RawMessage `json:"connections"`
	}
	if err := apptest.GetJSON(s.URL+"/api/presence/"+user, apiKey, &ans); err != nil {
		t.Fatalf("GET /api/presence/%s: %v", user, err)
	}
	return ans.Connections
}

// TestSSEPongElsewhere: an SSE client's answers may reach another instance than the
// one holding its stream (no affinity at the load balancer): they go through the
// shared store, and the stream stays as long as they come. Answers that stop, or that
// name the stream but come from another user, end it within 1.5 heartbeats of the last
// answered ping. A stream that did not opt in gets comment heartbeats and no pings.
func TestSSEPongElsewhere(t *testing.T) {
	rds := apptest.NewRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "BRIDGE_HEARTBEAT": frozenHeartbeat.String()}
	for k, v := range rds.Env {
		env[k] = v
	}
	a, b := apptest.Start(t, env), apptest.Start(t, env)

	plain := apptest.OpenSSE(t, a.URL+"/sse?user=plain", nil)
	for ev := plain.Next(t, 5*frozenHeartbeat); ev.Comment != "heartbeat"; ev = plain.Next(t, 5*frozenHeartbeat) {
		if ev.Event == "ping" {
			t.Fatalf("a stream without ?pong=1 got a ping event: %+v", ev)
		}
	}
	plain.Close()

	c := apptest.OpenSSE(t, a.URL+"/sse?user=echo&pong=1", nil)
	answer := func(as, token string) int {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"token": token})
		resp, err := apptest.Post(b.URL+"/api/pong?user="+as, "", body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	nextPing := func() apptest.SSEEvent {
		t.Helper()
		for {
			if ev := c.Next(t, 5*frozenHeartbeat); ev.Event == "ping" {
				return ev
			}
		}
	}
	for range 4 { // four heartbeats, each answered through b
		if st := answer("echo", nextPing().Data); st != http.StatusNoContent {
			t.Fatalf("POST /api/pong on the other instance: %d, want 204", st)
		}
	}
	if st := answer("echo", "not a token"); st != http.StatusBadRequest {
		t.Errorf("POST /api/pong with a malformed token: %d, want 400", st)
	}
	ping := nextPing() // answered by another user only: it does not count
	last := time.Now()
	if st := answer("intruder", ping.Data); st != http.StatusNoContent {
		t.Fatalf("POST /api/pong as another user: %d, want 204 (recorded under that user, harmlessly)", st)
	}
	c.WaitEnd(t, 5*frozenHeartbeat)
	took := time.Since(last)
	t.Logf("stream without an answer ended %s after its ping", took.Round(time.Millisecond))
	if took > frozenHeartbeat/2+frozenSlack {
		t.Errorf("stream ended %s after an unanswered ping, want within half a heartbeat plus slack", took)
	}
}
