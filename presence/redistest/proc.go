package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timing of the redis-server processes a test starts.
const (
	// redisStartTimeout bounds a redis-server start: it is ready in milliseconds, but
	// the CPUs are shared with other suites.
	redisStartTimeout = 15 * time.Second
	// redisStopTimeout bounds the wait for a killed redis-server to be reaped.
	redisStopTimeout = 10 * time.Second
	// redisPortAttempts bounds the retries with other ports when a bind fails (tests
	// of several packages start servers at the same time).
	redisPortAttempts = 20
)

// redisReady is in what redis-server logs once it accepts connections ("Ready to
// accept connections" on TCP, "The server is now ready to accept connections at
// <socket>" on a unix socket; compared in lower case): the port and, in cluster mode,
// the bus port are bound by then, so a connection reaches this process and not
// another one's.
const redisReady = "ready to accept connections"

// ErrBind says redis-server exited before it was ready, most likely because its
// port (or cluster bus port) was taken: the caller picks others and tries again.
var ErrBind = errors.New("redis-server exited before it was ready")

// Proc is one redis-server process a test started: its arguments are kept so it
// can be started again on the same address.
type Proc struct {
	args []string
	dir  string // its working directory (cluster config file, nothing else)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer // the last run's output, for failure messages
}

// StartProc runs redis-server with args in dir and waits until it is ready. It
// returns ErrBind (wrapped, with the log) when the process exits first; the
// process is killed when the test ends.
func StartProc(t testing.TB, dir string, args ...string) (*Proc, error) {
	t.Helper()
	p := &Proc{args: args, dir: dir}
	if err := p.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(p.Kill)
	return p, nil
}

func (p *Proc) Start() error {
	cmd := exec.Command("redis-server", p.args...)
	cmd.Dir = p.dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (apt-get install redis-server): %w", err)
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
	log := &syncBuffer{}
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			log.Write(append(sc.Bytes(), '\n'))
			if !signalled && strings.Contains(strings.ToLower(sc.Text()), redisReady) {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited, p.log = cmd, exited, log
	p.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-exited:
		return fmt.Errorf("%w:\n%s", ErrBind, log.String())
	case <-time.After(redisStartTimeout):
		p.Kill()
		return fmt.Errorf("redis-server not ready within %s:\n%s", redisStartTimeout, log.String())
	}
}

// Signal sends sig to the running process.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to redis-server: %w", sig, err)
	}
	return nil
}

// Kill ends the process with SIGKILL (continuing it first, should it be stopped, so
// it can be reaped) and waits until it is gone. Safe to call more than once.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-exited:
	case <-time.After(redisStopTimeout):
	}
}

// Restart kills the process and starts it again with the same arguments: the same
// address, and no data (the tests run Redis without persistence).
func (p *Proc) Restart() error {
	p.Kill()
	return p.Start()
}

// freePortSpan is where loopback ports for a redis-server are picked from: above the
// well-known services, and low enough that port+clusterBusOffset is still below the
// kernel's ephemeral range, where no outgoing connection can be holding it.
func freePortSpan() (lo, hi int) {
	lo, hi = 12000, 32768-clusterBusOffset
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first-clusterBusOffset > lo+100 {
				hi = first - clusterBusOffset
			}
		}
	}
	return lo, hi
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers: a
// redis-server's log, read for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
