// Command minimal is the limit `pushbridge bench -compare` measures Pushbridge's write
// path against (issue 14): the same design with nothing else on top — gorilla's
// upgrade, one reader goroutine per connection, a writer goroutine only while the
// connection's queue is non-empty that sends everything queued in one writev, and a
// broadcast of every publish to every connection. No auth, history, limits, metrics
// or bounded queues: do not serve anything with it.
//
//	minimal -addr 127.0.0.1:0     prints "minimal listening on :PORT"
//	GET  any path                 a WebSocket (raw: each publish is one text frame)
//	POST /api/publish             {"data": <JSON>}: broadcasts data's JSON text, as Pushbridge does
//	POST /publish                 broadcasts the body verbatim
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// maxPublish bounds a publish body, so a mistaken client cannot make it allocate without end.
const maxPublish = 1 << 20

// handshakeTimeout bounds how long a client may take to send its request headers.
const handshakeTimeout = 10 * time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{conns: map[*conn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", s.publishJSON)
	mux.HandleFunc("POST /publish", s.publishRaw)
	mux.HandleFunc("GET /", s.ws)
	fmt.Fprintf(os.Stdout, "minimal listening on :%d\n", ln.Addr().(*net.TCPAddr).Port)
	log.Fatal((&http.Server{Handler: mux, ReadHeaderTimeout: handshakeTimeout}).Serve(ln))
}

type server struct {
	mu    sync.RWMutex
	conns map[*conn]struct{}
}

// upgrader keeps no write buffer per connection (frames go straight to the socket)
// and reuses the HTTP server's read buffer.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, WriteBufferPool: &sync.Pool{}}

func (s *server) ws(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	// Only the writer writes to the socket: no pong or close frame from the reader.
	ws.SetPingHandler(func(string) error { return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	c := &conn{nc: ws.NetConn()}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	go func() { // the reader: ends when the client goes
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.kill()
		}()
		for {
			_, rd, err := ws.NextReader()
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, rd); err != nil {
				return
			}
		}
	}()
}

func (s *server) publishJSON(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxPublish)).Decode(&p); err != nil || len(p.Data) == 0 {
		http.Error(w, "want {\"data\": <JSON>}", http.StatusBadRequest)
		return
	}
	s.broadcast(p.Data)
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("{}"))
}

func (s *server) publishRaw(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPublish))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.broadcast(body)
	w.WriteHeader(http.StatusAccepted)
}

// broadcast encodes the frame once and queues it to every connection.
func (s *server) broadcast(body []byte) {
	f := textFrame(body)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.conns {
		c.send(f)
	}
}

// textFrame is body as one unmasked RFC 6455 text frame (server to client).
func textFrame(body []byte) []byte {
	n := len(body)
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x81, byte(n)}
	case n < 1<<16:
		h = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = make([]byte, 10)
		h[0], h[1] = 0x81, 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	return append(h, body...)
}

// conn is one WebSocket's queue and writer state.
type conn struct {
	nc      net.Conn
	mu      sync.Mutex
	queue   [][]byte
	writing bool // a writer goroutine runs (or the connection is dead: nothing is queued)
	dead    bool
}

func (c *conn) send(f []byte) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, f)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.write()
	}
}

// write sends everything queued in one writev until the queue is empty, then exits.
func (c *conn) write() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.dead {
			c.queue, c.writing = nil, false
			c.mu.Unlock()
			return
		}
		bufs := net.Buffers(c.queue)
		c.queue = nil
		c.mu.Unlock()
		if _, err := bufs.WriteTo(c.nc); err != nil {
			c.kill()
			return
		}
	}
}

func (c *conn) kill() {
	c.mu.Lock()
	c.dead, c.queue = true, nil
	c.mu.Unlock()
	c.nc.Close()
}
