package transport

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

func TestEncodeEvent(t *testing.T) {
	tests := []struct{ event, id, data, want string }{
		{"", "7", "{}", "id: 7\ndata: {}\n\n"},
		{"", "", "a\nb", "data: a\ndata: b\n\n"},
		{"", "", "a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
		{"reset", "", "", "event: reset\ndata: \n\n"},
		{"", "1", " lead", "id: 1\ndata:  lead\n\n"},
	}
	for _, tc := range tests {
		if got := string(EncodeEvent(tc.event, tc.id, []byte(tc.data))); got != tc.want {
			t.Errorf("EncodeEvent(%q, %q, %q) = %q, want %q", tc.event, tc.id, tc.data, got, tc.want)
		}
	}
}

// stuckWriter is a ResponseWriter whose writes block until released, like a client
// that stopped reading.
type stuckWriter struct {
	header  http.Header
	release chan struct{}
	wrote   chan struct{}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(b []byte) (int, error) {
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	<-w.release
	return len(b), nil
}

// TestSSESlowClientIsCut: while the writer is stuck, sends beyond the queue limit end
// the stream and count a slow disconnect; the replay is not held to the limit.
func TestSSESlowClientIsCut(t *testing.T) {
	w := &stuckWriter{header: http.Header{}, release: make(chan struct{}), wrote: make(chan struct{}, 1)}
	var st presence.Stats
	c := NewSSE(w, "u", SSEOptions{QueueLen: 2, Stats: &st})
	c.Replay(&presence.Replay{Head: "3", Messages: []*presence.Message{{ID: "1", Body: []byte("a")}, {ID: "2", Body: []byte("b")}, {ID: "3", Body: []byte("c")}}})
	served := make(chan error, 1)
	go func() { served <- c.Serve(context.Background()) }()
	<-w.wrote // the writer is stuck in its first write

	c.Send(&presence.Message{ID: "4", Body: []byte("d")})
	c.Send(&presence.Message{ID: "5", Body: []byte("e")})
	if n := st.SlowDisconnect.Load(); n != 0 {
		t.Fatalf("slow disconnects %d within the limit, want 0", n)
	}
	c.Send(&presence.Message{ID: "6", Body: []byte("f")})
	if n := st.SlowDisconnect.Load(); n != 1 {
		t.Fatalf("slow disconnects %d over the limit, want 1", n)
	}
	close(w.release)
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v, want nil (we ended it)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end after the overflow")
	}
}
