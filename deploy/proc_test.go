package deploy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timing of the processes under test.
const (
	// startTimeout bounds a start: the server listens within milliseconds, but the
	// CPUs are shared with other suites.
	startTimeout = 20 * time.Second
	// stopTimeout bounds the drain after SIGTERM before the process is killed; above
	// every BRIDGE_SHUTDOWN_TIMEOUT the manifests set.
	stopTimeout = 15 * time.Second
	// requestTimeout bounds one probe request.
	requestTimeout = 5 * time.Second
)

// listenLine is what the server prints on stdout once it listens (app.startHTTP).
var listenLine = regexp.MustCompile(`pushbridge listening on :(\d+)`)

// proc is the binary running as its own process, as a platform runs it.
type proc struct {
	URL string

	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{} // closed once Wait returned; err is then set
	err    error
}

// startProc runs bin with args and exactly env (nothing inherited, as in a container),
// and waits until it reports its port. It is killed when the test ends if still running.
func startProc(t *testing.T, bin string, args []string, env map[string]string) *proc {
	t.Helper()
	p := &proc{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = envList(env)
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case port <- m[1]:
				default: // reported once; never block the reader on a second line
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s stderr:\n%s", bin, p.stderr)
		}
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case pt := <-port:
		p.URL = "http://127.0.0.1:" + pt
	case <-p.exited:
		t.Fatalf("%s exited before listening (%v):\n%s", bin, p.err, p.stderr)
	case <-time.After(startTimeout):
		t.Fatalf("%s did not report its port within %s:\n%s", bin, startTimeout, p.stderr)
	}
	return p
}

// status is the HTTP status of GET path, or 0 with the error.
func (p *proc) status(path string) (int, error) {
	c := http.Client{Timeout: requestTimeout}
	resp, err := c.Get(p.URL + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// terminate sends SIGTERM, as both platforms do, and returns how the process ended.
func (p *proc) terminate(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("still running " + stopTimeout.String() + " after SIGTERM; killed")
	}
}

// envList is env as KEY=value lines, sorted so a failure reads the same every time.
func envList(env map[string]string) []string {
	l := make([]string, 0, len(env))
	for k, v := range env {
		l = append(l, k+"="+v)
	}
	sort.Strings(l)
	return l
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
