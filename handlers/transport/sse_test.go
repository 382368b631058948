package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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
	c.Replay(&presence.Replay{Messages: []presence.Delivery{{M: &presence.Message{Body: []byte("a")}}, {M: &presence.Message{Body: []byte("b")}}, {M: &presence.Message{Body: []byte("c")}}}})
	served := make(chan error, 1)
	go func() { served <- c.Serve(context.Background()) }()
	<-w.wrote // the writer is stuck in its first write

	c.Send([]presence.Delivery{{M: &presence.Message{Body: []byte("d")}, At: presence.Cursor{}}})
	c.Send([]presence.Delivery{{M: &presence.Message{Body: []byte("e")}, At: presence.Cursor{}}})
	if n := st.SlowDisconnect.Load(); n != 0 {
		t.Fatalf("slow disconnects %d within the limit, want 0", n)
	}
	c.Send([]presence.Delivery{{M: &presence.Message{Body: []byte("f")}, At: presence.Cursor{}}})
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

// A ping token is "<stream id>.<beat>"; anything else, or a token over MaxPongToken,
// is refused before a stream is looked up.
func TestPongToken(t *testing.T) {
	for _, tc := range []struct {
		token  string
		stream string
		beat   uint64
		ok     bool
	}{
		{"0123456789abcdef.1", "0123456789abcdef", 1, true},
		{"ab.18446744073709551615", "ab", 18446744073709551615, true},
		{"ab.18446744073709551616", "", 0, false},
		{"ab.", "", 0, false},
		{".1", "", 0, false},
		{"ab.-1", "", 0, false},
		{"ab1", "", 0, false},
		{"", "", 0, false},
		{strings.Repeat("a", MaxPongToken-2) + ".1", strings.Repeat("a", MaxPongToken-2), 1, true},
		{strings.Repeat("a", MaxPongToken-1) + ".1", "", 0, false},
	} {
		stream, beat, ok := PongToken(tc.token)
		if ok != tc.ok || (ok && (stream != tc.stream || beat != tc.beat)) {
			t.Errorf("PongToken(%q) = %q, %d, %v; want %q, %d, %v", tc.token, stream, beat, ok, tc.stream, tc.beat, tc.ok)
		}
	}
}

// A ping is answered with its own beat; an older answer arriving late does not undo a
// newer one.
func TestSSEPongKeepsNewest(t *testing.T) {
	c := NewSSE(httptest.NewRecorder(), "u", SSEOptions{Echo: true})
	if c.ID() == "" {
		t.Fatal("a stream with Echo has no id for its tokens")
	}
	c.Pong(3)
	c.Pong(2)
	if !c.answered(t.Context(), 3) || c.answered(t.Context(), 4) {
		t.Errorf("after answers 3 then 2: beat 3 answered %v, beat 4 answered %v; want true, false",
			c.answered(t.Context(), 3), c.answered(t.Context(), 4))
	}
	if NewSSE(httptest.NewRecorder(), "u", SSEOptions{}).ID() != "" {
		t.Error("a stream without Echo has an id")
	}
}
