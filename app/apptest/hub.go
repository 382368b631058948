package apptest

import (
	"context"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

// LocalHub is one instance's hub with every part in memory (history of historySize
// messages, directory, relay), listening until the test ends, and the dispatcher that
// reaches it: for tests that drive the hub or the routes without a whole server.
func LocalHub(t testing.TB, instance string, historySize int) (*presence.Hub, presence.Dispatcher) {
	t.Helper()
	h, dir, bus := presence.NewMemoryHistory(historySize, time.Hour), presence.NewMemoryDirectory(), presence.NewMemoryBus()
	hub := presence.NewHub(presence.HubConfig{Instance: instance, History: h, Directory: dir})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = hub.Listen(ctx, bus.Relay(instance)) }()
	<-hub.Listening()
	return hub, presence.NewMemoryDispatcher(h, dir, bus)
}
