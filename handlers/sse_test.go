package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// TestSSEOutlivesWriteTimeout: an http.Server's WriteTimeout would end any response
// that lasts longer; the stream sets its own deadline before each write and lives on.
func TestSSEOutlivesWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := presence.NewHub()
	router := app.NewRouter(hub, presence.NewMemoryHistory(100, time.Hour), 1<<16, log)
	srv := handlers.NewServer(handlers.Deps{
		Instance: "test", Hub: hub, Directory: presence.NewMemoryDirectory(), Router: router,
		Inbound: "off", Auth: &handlers.Auth{Dev: true}, Ready: func() error { return nil },
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

	c := apptest.OpenSSE(t, "http://"+ln.Addr().String()+"/sse?user=w", nil)
	start := time.Now()
	for time.Since(start) < 4*writeTimeout { // heartbeats keep coming past the timeout
		c.Next(t, 5*time.Second)
	}
	if err := router.Route(context.Background(), &presence.Message{UserID: "w", RoutingKey: "k", Body: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := c.Next(t, 5*time.Second)
		if ev.Data == "still here" {
			return
		}
	}
}
