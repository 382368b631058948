// Package apptest starts real Pushbridge servers and real broker topology for tests.
// Tests use the real RabbitMQ (and Redis); when one is unreachable they fail with a
// message saying how to start it, never skip.
package apptest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app"
)

// AMQPURL is the broker the tests use: $TEST_AMQP_URL or the local RabbitMQ.
func AMQPURL() string {
	if u := os.Getenv("TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// RequireRabbit dials RabbitMQ or fails the test with how to start it.
func RequireRabbit(t testing.TB) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(AMQPURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s: %v (start it with: rabbitmq-server -detached)", AMQPURL(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Unique returns prefix plus a random suffix, for queue, exchange and key names.
func Unique(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Topology is a test's own exchange and queues on the real broker.
type Topology struct {
	Exchange string
	Queues   []string          // in the order of Keys
	Keys     []string          // routing keys, one queue each
	Env      map[string]string // BRIDGE_EXCHANGE and BRIDGE_BINDINGS for the server
}

// NewTopology names an exchange and one queue per routing key, unique to this test,
// and deletes them when the test ends. The server under test declares them.
func NewTopology(t testing.TB, keys ...string) *Topology {
	t.Helper()
	conn := RequireRabbit(t)
	tp := &Topology{Exchange: Unique("pbtest_x"), Keys: keys}
	var bindings []string
	for _, k := range keys {
		q := Unique("pbtest_q_" + k)
		tp.Queues = append(tp.Queues, q)
		bindings = append(bindings, q+"="+k)
	}
	tp.Env = map[string]string{"BRIDGE_EXCHANGE": tp.Exchange, "BRIDGE_BINDINGS": strings.Join(bindings, ",")}
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		for _, q := range tp.Queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		_ = ch.ExchangeDelete(tp.Exchange, false, false)
	})
	return tp
}

// Publish publishes body to the topology's exchange with a plain AMQP client, the way
// a backend service would, and waits for the broker's confirm.
func (tp *Topology) Publish(t testing.TB, key string, body []byte, headers amqp.Table) {
	t.Helper()
	tp.PublishMany(t, key, [][]byte{body}, headers)
}

// PublishMany publishes bodies in order on one channel and waits for all confirms.
func (tp *Topology) PublishMany(t testing.TB, key string, bodies [][]byte, headers amqp.Table) {
	t.Helper()
	ch := OpenChannel(t)
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	var confirms []*amqp.DeferredConfirmation
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirm(tp.Exchange, key, false, false, amqp.Publishing{Body: b, Headers: headers})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		confirms = append(confirms, dc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: ok=%v err=%v", ok, err)
		}
	}
}

// OpenChannel opens an AMQP channel on the shared test connection; the caller closes it.
func OpenChannel(t testing.TB) *amqp.Channel {
	t.Helper()
	ch, err := RequireRabbit(t).Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	return ch
}

// QueueReady returns the messages ready in queue q. Unacknowledged ones are not
// counted while their consumer lives: stop the server first, and the broker
// requeues whatever it had not acknowledged, so 0 then means all were acked.
func QueueReady(t testing.TB, q string) int {
	t.Helper()
	ch := OpenChannel(t)
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", q, err)
	}
	return st.Messages
}

// Server is a Pushbridge server running in this test process through app.Run.
type Server struct {
	Env    map[string]string // the environment it was started with
	Addr   string            // 127.0.0.1:port
	URL    string            // http://127.0.0.1:port
	Stderr *syncBuffer

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

var listenLine = regexp.MustCompile(`listening on :(\d+)`)

// Start runs app.Run with env (plus PORT=0) and the extra args, waits until /healthz
// answers, and stops the server when the test ends.
func Start(t testing.TB, env map[string]string, args ...string) *Server {
	t.Helper()
	env2 := map[string]string{"PORT": "0"}
	for k, v := range env {
		env2[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &Server{Env: env2, cancel: cancel, done: make(chan error, 1), Stderr: &syncBuffer{}}
	go func() {
		err := app.Run(ctx, append([]string{"pushbridge", "serve"}, args...), func(k string) string { return env2[k] }, pw, s.Stderr)
		pw.Close()
		s.done <- err
	}()
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		close(port)
	}()
	select {
	case p, ok := <-port:
		if !ok {
			err := <-s.done
			t.Fatalf("server did not start: %v\n%s", err, s.Stderr.String())
		}
		s.Addr = "127.0.0.1:" + p
		s.URL = "http://" + s.Addr
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not report its port within 15s\n%s", s.Stderr.String())
	}
	t.Cleanup(func() { s.Stop(t) })
	register(t, s)
	Eventually(t, 10*time.Second, "server healthy", func() bool {
		resp, err := http.Get(s.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// running maps each test to the server it started last, so helpers that reach the
// in-process queue (only possible through the server's API) can find it.
var running sync.Map // testing.TB -> *Server

func register(t testing.TB, s *Server) {
	running.Store(t, s)
	t.Cleanup(func() { running.CompareAndDelete(t, s) })
}

// ServerOf returns the server t started last with Start, failing the test if none.
func ServerOf(t testing.TB) *Server {
	t.Helper()
	s, ok := running.Load(t)
	if !ok {
		t.Fatalf("this test started no server with apptest.Start")
	}
	return s.(*Server)
}

// Metric reads one unlabelled metric from s's /metrics, failing the test if it is absent.
func (s *Server) Metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// WSURL is the ws:// address of path on s.
func (s *Server) WSURL(path string) string { return "ws://" + s.Addr + path }

// Stop drains the server as SIGTERM would and waits for Run to return.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("server exited with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("server did not stop within 30s")
		}
	})
}

// Eventually polls cond until it holds or timeout passes, then fails with what.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
