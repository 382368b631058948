package e2e_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// binary is the pushbridge binary the tests of this package run as real processes,
// built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	if url := os.Getenv(hammerEnv); url != "" { // this binary run as TestPollHammerGets429's hammer
		os.Exit(hammerMain(url))
	}
	dir, err := os.MkdirTemp("", "pushbridge-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pushbridge")
	build := exec.Command("go", "build", "-o", binary, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pushbridge:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Timing of the processes under test.
const (
	// procStartTimeout bounds a start: the server is ready well under a second, but
	// CPUs are shared with other suites.
	procStartTimeout = 20 * time.Second
	// procStopTimeout bounds a drain at cleanup before the process is killed.
	procStopTimeout = 15 * time.Second
)

var listenLine = regexp.MustCompile(`pushbridge listening on :(\d+)`)

// proc is one pushbridge server running as its own process.
type proc struct {
	Name string
	Addr string // 127.0.0.1:port
	URL  string

	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
	once   sync.Once
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProc runs the binary with env (plus PORT=0) and waits until it reports its
// port. It is stopped with SIGTERM (and its drain waited for) when the test ends.
func startProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	return startProcUnder(t, name, env)
}

// startProcUnder is startProc with the binary run by a wrapper command, such as
// prlimit (the wrapper must exec the binary, so signals reach it).
func startProcUnder(t *testing.T, name string, env map[string]string, wrapper ...string) *proc {
	t.Helper()
	p := &proc{Name: name, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	argv := append(append([]string{}, wrapper...), binary, "serve")
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORT=0"}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() { // the server's side of what went wrong
			log := p.stderr.String()
			if len(log) > 8<<10 {
				log = "…" + log[len(log)-8<<10:]
			}
			t.Logf("%s's log (its end):\n%s", name, log)
		}
	})
	select {
	case pt := <-port:
		p.Addr = "127.0.0.1:" + pt
		p.URL = "http://" + p.Addr
	case <-p.exited:
		t.Fatalf("%s exited before listening:\n%s", name, p.stderr.String())
	case <-time.After(procStartTimeout):
		t.Fatalf("%s did not report its port within %s:\n%s", name, procStartTimeout, p.stderr.String())
	}
	return p
}

// kill ends the process with SIGKILL: no drain, no goodbye, as a crash.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.Name, err)
	}
	<-p.exited
}

// term sends SIGTERM, waits for the drain (at most procStopTimeout, then kills it
// and fails the test) and returns how long the process took to exit.
func (p *proc) term(t *testing.T) time.Duration {
	t.Helper()
	var took time.Duration
	p.once.Do(func() {
		start := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			took = time.Since(start)
		case <-time.After(procStopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Fatalf("%s did not stop within %s after SIGTERM:\n%s", p.Name, procStopTimeout, p.stderr.String())
		}
	})
	return took
}

func (p *proc) stop(t *testing.T) {
	p.once.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(procStopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("%s did not stop within %s after SIGTERM:\n%s", p.Name, procStopTimeout, p.stderr.String())
		}
	})
}

func (p *proc) wsURL(path string) string { return "ws://" + p.Addr + path }

// clusterEnv is the environment of every instance of a test: dev mode, the test's own
// RabbitMQ topology (one queue, key "contract") and Redis prefix, and an API key.
func clusterEnv(t *testing.T, extra map[string]string) (map[string]string, *apptest.Topology) {
	t.Helper()
	return clusterEnvOn(t, testRedisEnv(t), extra)
}

// e2eRedis chooses the Redis of the multi-process tests that do not break it:
// "shared" (the Redis at REDIS_URL, a key prefix of the test's own) or "cluster" (a
// private 3-master Redis Cluster per test). The fault tests have -faults.redis.
// go test ./e2e/ -args -e2e.redis=cluster
var e2eRedis = flag.String("e2e.redis", "shared", "multi-process tests: the Redis, shared or cluster")

// testRedisEnv is REDIS_URL and BRIDGE_REDIS_PREFIX of the Redis -e2e.redis names.
func testRedisEnv(t *testing.T) map[string]string {
	t.Helper()
	switch *e2eRedis {
	case "shared":
		return apptest.NewRedis(t).Env
	case "cluster":
		return apptest.NewRedisCluster(t).Env()
	}
	t.Fatalf("-e2e.redis=%q: want shared or cluster", *e2eRedis)
	return nil
}

// clusterEnvOn is clusterEnv on the Redis of redisEnv (REDIS_URL, BRIDGE_REDIS_PREFIX).
func clusterEnvOn(t *testing.T, redisEnv, extra map[string]string) (map[string]string, *apptest.Topology) {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_API_KEY": apiKey}
	for _, m := range []map[string]string{tp.Env, redisEnv, extra} {
		for k, v := range m {
			env[k] = v
		}
	}
	return env, tp
}

const apiKey = "e2e-key"

// publisher publishes to a topology as a backend would, each message with its own
// AMQP message id (what the gateway dedupes a redelivery by), waiting for confirms.
type publisher struct {
	tp *apptest.Topology
	ch *amqp.Channel
	n  int
}

func newPublisher(t *testing.T, tp *apptest.Topology) *publisher {
	t.Helper()
	conn := apptest.RequireRabbit(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return &publisher{tp: tp, ch: ch}
}

// publish sends bodies in order on key and waits until the broker confirmed them all.
func (p *publisher) publish(t *testing.T, key string, bodies [][]byte) {
	t.Helper()
	if err := p.send(key, bodies); err != nil {
		t.Fatal(err)
	}
}

// send is publish for any goroutine: it returns what went wrong.
func (p *publisher) send(key string, bodies [][]byte) error {
	dcs := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		p.n++
		dc, err := p.ch.PublishWithDeferredConfirm(p.tp.Exchange, key, false, false,
			amqp.Publishing{Body: b, MessageId: fmt.Sprintf("e2e-%d", p.n), ContentType: "application/json"})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		dcs = append(dcs, dc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			return fmt.Errorf("publish not confirmed: ok=%v err=%v", ok, err)
		}
	}
	return nil
}
