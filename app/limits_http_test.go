package app_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// answer is a request's status and Retry-After, or the error that kept it from one.
type answer struct {
	status     int
	retryAfter string
	err        error
}

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d Retry-After %q", a.status, a.retryAfter)
}

// do makes one request and drops the body once the status is known (a stream stays
// open only until then). It does not fail the test, so any goroutine may call it.
func do(method, url, body string) answer {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	resp.Body.Close()
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
}

// TestSendTooLarge413: POST /api/send with data over BRIDGE_MAX_MESSAGE_BYTES, or a body
// far over it, is 413, and the bystander keeps receiving.
func TestSendTooLarge413(t *testing.T) {
	ls := newLimitServer(t, nil) // BRIDGE_MAX_MESSAGE_BYTES=1024
	for name, n := range map[string]int{"data over the limit": 2000, "body far over the limit": 64 << 10} {
		body := fmt.Sprintf(`{"routingKey":"chat","data":%q}`, strings.Repeat("x", n))
		if got := do(http.MethodPost, ls.URL+"/api/send?user=a", body); got.status != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: got %v, want 413", name, got)
		}
		ls.bystanderReceives(t)
	}
}

// TestSendFlood429: a user sending faster than BRIDGE_MESSAGE_RATE beyond its burst is
// answered 429 with Retry-After; another user's sends are not, and the bystander keeps
// receiving.
func TestSendFlood429(t *testing.T) {
	ls := newLimitServer(t, nil) // rate 5/s, burst 10, inbound off: a send within the rate is 403
	const burst, most = 10, 1000
	send := func(user string) answer {
		return do(http.MethodPost, ls.URL+"/api/send?user="+user, `{"routingKey":"chat","data":"spam"}`)
	}
	var limited answer
	for i := 0; i < most && limited.status == 0; i++ {
		got := send("a")
		switch {
		case got.status == http.StatusTooManyRequests:
			limited = got
		case i < burst && got.status != http.StatusForbidden:
			t.Fatalf("send %d, within the burst: got %v, want the inbound-off 403", i, got)
		}
	}
	if limited.status == 0 {
		t.Fatalf("%d sends in a row were never limited", most)
	}
	if n, err := strconv.Atoi(limited.retryAfter); err != nil || n < 1 {
		t.Errorf("429 with Retry-After %q, want whole seconds >= 1", limited.retryAfter)
	}
	if got := send("c"); got.status != http.StatusForbidden {
		t.Errorf("another user's send during a's flood: got %v, want the inbound-off 403", got)
	}
	ls.bystanderReceives(t)
}

// TestStreamsPerUser: SSE streams and waiting polls count toward
// BRIDGE_MAX_CONNS_PER_USER with WebSockets; over it, every transport is refused with
// 503 and Retry-After while the bystander keeps receiving; a poll that answers frees
// its slot, and one that answers at once takes none.
func TestStreamsPerUser(t *testing.T) {
	// BRIDGE_MAX_CONNS_PER_USER=5; the budget of costly requests out of the way: polls
	// with a cursor draw from it before they would wait (TestPollHammerGets429).
	ls := newLimitServer(t, map[string]string{"BRIDGE_USER_BURST": "1000"})
	cursor := poll(t, ls.Server, q("user", "a")).Cursor
	for range 4 {
		apptest.OpenSSE(t, ls.URL+"/sse?user=a", nil)
	}
	type polledAnswer struct {
		pollAnswer
		err error
	}
	polled := make(chan polledAnswer, 1) // the poll ends with a message, or the server's drain at cleanup
	go func() {
		a, err := pollErr(ls.Server, q("user", "a", "cursor", cursor, "wait", "20s"))
		polled <- polledAnswer{a, err}
	}()
	apptest.Eventually(t, 10*time.Second, "b, 4 streams and a waiting poll held", func() bool { return connCount(t, ls.Server) == 6 })

	const attempts, parallel = 100, 10
	answers := make(chan answer, attempts)
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range attempts / parallel {
				path := []string{"/sse?user=a", "/poll?user=a&wait=1s&cursor=" + cursor}[(w+i)%2]
				answers <- do(http.MethodGet, ls.URL+path, "")
			}
		}()
	}
	ls.bystanderReceives(t)
	wg.Wait()
	close(answers)
	for got := range answers {
		if got.status != http.StatusServiceUnavailable || got.retryAfter != "5" {
			t.Fatalf("a stream or poll over the limit: got %v, want 503 with Retry-After 5", got)
		}
	}
	if got := dialResponse(t, ls.WSURL("/ws/yxd/a"), nil); got.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a WebSocket over the limit: got %d, want 503", got.StatusCode)
	}
	// A poll that answers at once (here: no cursor yet) holds no connection, so the
	// limit does not refuse it.
	if got := do(http.MethodGet, ls.URL+"/poll?user=a", ""); got.status != http.StatusOK {
		t.Errorf("a poll that does not wait, at the limit: got %v, want 200", got)
	}
	ls.bystanderReceives(t)

	body := `{"receiveUserId":"a","n":1}`
	ls.tp.Publish(t, "contract", []byte(body), nil)
	select {
	case a := <-polled:
		if a.err != nil {
			t.Fatal(a.err)
		}
		if len(a.Messages) != 1 || bodyOfData(t, a.Messages[0].Data) != body {
			t.Fatalf("the waiting poll got %+v, want %s", a.Messages, body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting poll did not answer the message")
	}
	apptest.Eventually(t, 5*time.Second, "the poll's slot serves a new stream", func() bool {
		return do(http.MethodGet, ls.URL+"/sse?user=a", "").status == http.StatusOK
	})
}
