package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

// testHead is the cursor a test stream's replay names as its head, and testNext the
// one after the message the tests send.
var (
	testHead = presence.Cursor{Bcast: presence.Pos{Epoch: "abcdefghij", Seq: 7}}
	testNext = presence.Cursor{Bcast: presence.Pos{Epoch: "abcdefghij", Seq: 8}}
)

// hijackServer serves one SSE stream per request on a taken connection, made with
// opts; each stream and what ServeConn returned come out on the channels.
func hijackServer(t *testing.T, opts SSEOptions) (url string, streams <-chan *SSE, ended <-chan error) {
	t.Helper()
	sc, ec := make(chan *SSE, 4), make(chan error, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := NewSSE(w, "u", opts)
		c.Replay(&presence.Replay{Head: testHead})
		w.Header().Set("Content-Type", "text/event-stream")
		taken, err := c.Hijack(r)
		if !taken || err != nil {
			t.Errorf("Hijack over HTTP/1.1: taken %v, err %v; want true, nil", taken, err)
			return
		}
		sc <- c
		go func() { ec <- c.ServeConn() }()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, sc, ec
}

// sseLines reads a stream's lines, blank ones included, in the background.
func sseLines(t *testing.T, url string) (*http.Response, <-chan string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		if err := sc.Err(); err != nil {
			lines <- "error: " + err.Error()
		}
	}()
	return resp, lines
}

// waitLine reads lines until one that want matches, failing the test on the stream's
// end or after 5 s; it returns the line.
func waitLine(t *testing.T, lines <-chan string, want func(string) bool, what string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %s", what)
			}
			if want(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %s within 5s", what)
		}
	}
}

// waitEnd waits for the stream's clean end: EOF after the last chunk, no error.
func waitEnd(t *testing.T, lines <-chan string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return
			}
			if strings.HasPrefix(l, "error: ") {
				t.Fatalf("stream ended with %s, want a clean end", l)
			}
		case <-deadline:
			t.Fatal("the stream did not end within 5s")
		}
	}
}

func waitServed(t *testing.T, ended <-chan error) error {
	t.Helper()
	select {
	case err := <-ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return within 5s")
	}
	return nil
}

// TestSSEHijacked: a taken stream answers with the header set before Hijack, chunked,
// Connection: close; opens with the retry hint and the replay; writes heartbeats and
// what is sent, with its id; and a drain ends it cleanly with a reconnect event.
func TestSSEHijacked(t *testing.T) {
	url, streams, ended := hijackServer(t, SSEOptions{V1: true, Heartbeat: 100 * time.Millisecond})
	resp, lines := sseLines(t, url)
	c := <-streams
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	if !resp.Close || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Close %v, Transfer-Encoding %v; want true, [chunked]", resp.Close, resp.TransferEncoding)
	}
	if l := <-lines; l != "retry: 2000" {
		t.Errorf("first line %q, want the retry hint", l)
	}
	waitLine(t, lines, func(l string) bool { return l == "event: welcome" }, "welcome event")
	waitLine(t, lines, func(l string) bool { return l == "id: "+testHead.String() }, "the replay's head id")
	waitLine(t, lines, func(l string) bool { return l == ": heartbeat" }, "heartbeat")

	m := &presence.Message{Epoch: "abcdefghij", Seq: 8, RoutingKey: "k", Body: []byte(`{"a":1}`)}
	c.Send([]presence.Delivery{{M: m, At: testNext}})
	waitLine(t, lines, func(l string) bool { return l == "id: "+testNext.String() }, "the message's id")
	data := waitLine(t, lines, func(l string) bool { return strings.HasPrefix(l, "data: ") }, "the message's data")
	if !strings.Contains(data, `"id":"`+testNext.String()+`"`) || !strings.Contains(data, `{"a":1}`) {
		t.Errorf("message data %q, want the bridge.v1 frame with its id and the body", data)
	}

	c.Drain(context.Background(), 0)
	waitLine(t, lines, func(l string) bool { return l == "event: reconnect" }, "reconnect event")
	waitEnd(t, lines)
	if err := waitServed(t, ended); err != nil {
		t.Errorf("ServeConn: %v, want nil (we ended it)", err)
	}
}

// TestSSEHijackedClientLeaves: the reader notices a client that closes its side, and
// the stream ends; its end reports the client's EOF.
func TestSSEHijackedClientLeaves(t *testing.T) {
	url, _, ended := hijackServer(t, SSEOptions{Heartbeat: time.Hour})
	resp, lines := sseLines(t, url)
	waitLine(t, lines, func(l string) bool { return l == "id: "+testHead.String() }, "the replay's head id")
	resp.Body.Close()
	if err := waitServed(t, ended); !errors.Is(err, io.EOF) {
		t.Errorf("ServeConn: %v, want EOF", err)
	}
}

// TestSSEHijackedMaxAge: a taken stream ends itself at its maximum age with a reconnect
// event, and the client sees a clean end.
func TestSSEHijackedMaxAge(t *testing.T) {
	url, _, ended := hijackServer(t, SSEOptions{Heartbeat: time.Hour, MaxAge: 200 * time.Millisecond})
	_, lines := sseLines(t, url)
	waitLine(t, lines, func(l string) bool { return strings.Contains(l, "max connection age") }, "reconnect event")
	waitEnd(t, lines)
	if err := waitServed(t, ended); err != nil {
		t.Errorf("ServeConn: %v, want nil (we ended it)", err)
	}
}

// TestSSEHijackedNoPong: with Echo, a client that never answers its ping is cut half a
// heartbeat after it; one that answers every ping is kept.
func TestSSEHijackedNoPong(t *testing.T) {
	const beat = 100 * time.Millisecond
	url, streams, ended := hijackServer(t, SSEOptions{Heartbeat: beat, Echo: true})
	_, lines := sseLines(t, url)
	c := <-streams
	for i := 0; i < 4; i++ { // answered: kept past several beats
		l := waitLine(t, lines, func(l string) bool { return strings.HasPrefix(l, "data: "+c.ID()+".") }, "ping")
		_, n, ok := PongToken(strings.TrimPrefix(l, "data: "))
		if !ok {
			t.Fatalf("ping token in %q", l)
		}
		c.Pong(n)
	}
	select {
	case err := <-ended:
		t.Fatalf("a stream that answered every ping ended: %v", err)
	default:
	}
	if err := waitServed(t, ended); !errors.Is(err, errNoPong) {
		t.Errorf("ServeConn after unanswered pings: %v, want errNoPong", err)
	}
}

// TestSSEHijackedClientFloods: a client that sends more than maxClientBytes on its
// stream's connection is cut.
func TestSSEHijackedClientFloods(t *testing.T) {
	url, _, ended := hijackServer(t, SSEOptions{Heartbeat: time.Hour})
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A body on a GET is read by nobody once the connection is taken: it is what the
	// client sends after its request.
	req.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", 2*maxClientBytes)))
	req.ContentLength = 2 * maxClientBytes
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
	}
	if err := waitServed(t, ended); !errors.Is(err, errClientSent) {
		t.Errorf("ServeConn: %v, want errClientSent", err)
	}
}

func TestPutChunkHead(t *testing.T) {
	for n, want := range map[int]string{1: "1\r\n", 15: "f\r\n", 16: "10\r\n", 0x1ab: "1ab\r\n"} {
		if got := string(putChunkHead(make([]byte, maxChunkHead), n)); got != want {
			t.Errorf("putChunkHead(%d) = %q, want %q", n, got, want)
		}
	}
}

// BenchmarkSSEFanout is BenchmarkWSFanout for SSE streams on taken connections:
// broadcasts from Hub.Deliver to conns streams, whose clients count the events' ends
// (the blank line) in the raw bytes.
func BenchmarkSSEFanout(b *testing.B) {
	fanoutCases(b, []int{1, 10, 50}, func(b *testing.B, v1 bool, conns int) {
		hub := newTestHub()
		opts := SSEOptions{V1: v1, QueueLen: 1 << 30, QueueBytes: 1 << 40, Heartbeat: time.Hour, Stats: &hub.Stats}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := NewSSE(w, r.URL.Query().Get("user"), opts)
			if err := hub.Attach(context.Background(), quietSSE{c}, "", 0); err != nil {
				b.Error(err)
				return
			}
			if taken, err := c.Hijack(r); !taken || err != nil {
				b.Errorf("Hijack: %v %v", taken, err)
				return
			}
			go func() {
				defer hub.Detach(context.Background(), quietSSE{c})
				_ = c.ServeConn()
			}()
		}))
		b.Cleanup(srv.Close)
		ncs := make([]net.Conn, conns)
		for i := range ncs {
			nc, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { nc.Close() })
			fmt.Fprintf(nc, "GET /?user=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			ncs[i] = nc
		}
		awaitConns(hub, conns)
		msgs := broadcasts(b.N)
		var wg sync.WaitGroup
		for _, nc := range ncs {
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				var last byte
				for ends := 0; ends < b.N+1; { // the retry hint, then the messages
					n, err := nc.Read(buf)
					if err != nil {
						b.Error(err)
						return
					}
					for _, c := range buf[:n] {
						if c == '\n' && last == '\n' {
							ends++
						}
						last = c
					}
				}
			})
		}
		measureFanout(b, hub, msgs, &wg, conns)
	})
}

// quietSSE is an SSE stream registered without its greeting, as quiet is for WS.
type quietSSE struct{ *SSE }

func (quietSSE) Replay(*presence.Replay) {}

// TestSSEHijackedWhenRoom: a catch-up waiting for room on a taken stream is called back
// once its writer has drained the queue to the low mark, as on a WebSocket.
func TestSSEHijackedWhenRoom(t *testing.T) {
	called := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := NewSSE(w, "u", SSEOptions{QueueLen: 8, Heartbeat: time.Hour})
		for i := range 6 {
			c.Send([]presence.Delivery{{M: &presence.Message{Body: []byte("m")}, At: presence.Cursor{Bcast: presence.Pos{Epoch: "abcdefghij", Seq: uint64(i) + 1}}}})
		}
		if msgs, _ := c.Room(); msgs != 0 {
			t.Errorf("room with 6 of 8 queued: %d messages, want 0", msgs)
		}
		c.WhenRoom(func() { close(called) })
		select {
		case <-called:
			t.Error("WhenRoom called back before anything was written")
		default:
		}
		if taken, err := c.Hijack(r); !taken || err != nil {
			t.Errorf("Hijack: %v, %v", taken, err)
			return
		}
		go func() { _ = c.ServeConn() }()
	}))
	t.Cleanup(srv.Close)
	_, lines := sseLines(t, srv.URL)
	sixth := "id: " + presence.Cursor{Bcast: presence.Pos{Epoch: "abcdefghij", Seq: 6}}.String()
	waitLine(t, lines, func(l string) bool { return l == sixth }, "the sixth message")
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("WhenRoom not called back within 5s of the queue being written")
	}
}
