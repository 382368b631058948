package handlers_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// TestSSEOutlivesWriteTimeout: an http.Server's WriteTimeout would end any response
// that lasts longer; the stream sets its own deadline before each write and lives on.
func TestSSEOutlivesWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	addr, disp := serve(t, writeTimeout, nil)
	c := apptest.OpenSSE(t, "http://"+addr+"/sse?user=w", nil)
	start := time.Now()
	for time.Since(start) < 4*writeTimeout { // heartbeats keep coming past the timeout
		c.Next(t, 5*time.Second)
	}
	if _, err := disp.Dispatch(context.Background(), &presence.Message{UserID: "w", RoutingKey: "k", Body: []byte("still here")}, ""); err != nil {
		t.Fatal(err)
	}
	for {
		ev := c.Next(t, 5*time.Second)
		if ev.Data == "still here" {
			return
		}
	}
}

// TestSSEOverHTTP2: over HTTP/2, where the connection cannot be taken from net/http,
// the stream is a net/http response and works as one over HTTP/1.1 does.
func TestSSEOverHTTP2(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, disp := apptest.LocalHub(t, "test", 100)
	srv := httptest.NewUnstartedServer(handlers.NewServer(handlers.Deps{
		Instance: "test", Hub: hub, Dispatcher: disp,
		Inbound: "off", Auth: &handlers.Auth{Dev: true}, Ready: func() error { return nil },
		Metrics: http.NotFoundHandler(), Log: log,
		Limits: handlers.Limits{MaxMessageBytes: 1 << 16, SendQueue: 16, Heartbeat: time.Hour},
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/sse?user=h2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %s", what)
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5s", what)
		}
		return ""
	}
	if l := next("the retry hint"); l != "retry: 2000" {
		t.Errorf("first line %q, want the retry hint", l)
	}
	apptest.Eventually(t, 5*time.Second, "the stream registered", func() bool { return hub.Count() == 1 })
	if _, err := disp.Dispatch(context.Background(), &presence.Message{UserID: "h2", RoutingKey: "k", Body: []byte("over h2")}, ""); err != nil {
		t.Fatal(err)
	}
	for l := next("the message"); l != "data: over h2"; l = next("the message") {
	}
}

// serve runs the routes on an http.Server with the given WriteTimeout, as app.serve
// does but with the knobs a test needs, and returns its address and the dispatcher
// that reaches its connections.
func serve(t *testing.T, writeTimeout time.Duration, draining func() bool) (string, presence.Dispatcher) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, disp := apptest.LocalHub(t, "test", 100)
	srv := handlers.NewServer(handlers.Deps{
		Instance: "test", Hub: hub, Dispatcher: disp,
		Inbound: "off", Auth: &handlers.Auth{Dev: true}, Ready: func() error { return nil }, Draining: draining,
		Metrics: http.NotFoundHandler(), Log: log,
		Limits: handlers.Limits{MaxMessageBytes: 1 << 16, SendQueue: 16, Heartbeat: 50 * time.Millisecond},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, WriteTimeout: writeTimeout}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), disp
}

// TestRefusedWhileDraining: once the instance drains, new streams and polls are sent
// away at once rather than attached to a hub that will not tell them to go.
func TestRefusedWhileDraining(t *testing.T) {
	addr, _ := serve(t, 0, func() bool { return true })
	for _, path := range []string{"/sse?user=a", "/poll?user=a", "/poll?user=a&cursor=1"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: status %d, Retry-After %q; want 503 with Retry-After", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}
