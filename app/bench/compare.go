package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// compareStartTimeout bounds how long a server of -compare may take to say where it
// listens.
const compareStartTimeout = 30 * time.Second

// compareStopTimeout is how long a server of -compare gets to exit after SIGTERM
// before it is killed (Pushbridge drains for 1 s here, see compareTarget).
const compareStopTimeout = 10 * time.Second

// minimalPackage is the minimal gorilla server -compare measures against.
const minimalPackage = "github.com/pushbridge/pushbridge/app/bench/minimal"

// benchResult is what one run measured, for -compare's table.
type benchResult struct {
	perSec, p50, p99 float64 // deliveries/s; latency in seconds
	lost, dups       int64
	rssPerConn       float64 // bytes of the server's RSS per idle connection, when its pid is known
}

// runCompare runs the same broadcast workload (o.conns raw WebSockets, every message
// to all, o.rate for o.duration) against a fresh `pushbridge serve -dev` process and a
// fresh minimal server, one after the other, and prints both and the ratios.
func runCompare(ctx context.Context, o benchOpts, stdout io.Writer) error {
	if o.url != "" || o.jitter > 0 || o.transport != "ws" {
		return errors.New("bench: -compare starts its own servers and runs raw WebSockets: leave out -url, -jitter and -transport")
	}
	pb := o.pushbridgeBin
	if pb == "" {
		var err error
		if pb, err = os.Executable(); err != nil {
			return fmt.Errorf("bench -compare: this binary's path (give -pushbridge PATH): %w", err)
		}
	}
	mini := o.minimalBin
	if mini == "" {
		dir, err := os.MkdirTemp("", "pushbridge-compare-")
		if err != nil {
			return fmt.Errorf("bench -compare: %w", err)
		}
		defer os.RemoveAll(dir)
		mini = filepath.Join(dir, "minimal")
		fmt.Fprintf(stdout, "building the minimal server (%s) ...\n", minimalPackage)
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", mini, minimalPackage).CombinedOutput(); err != nil {
			return fmt.Errorf("bench -compare: building the minimal server needs this repository and a Go toolchain (or give -minimal PATH): %w: %s", err, out)
		}
	}
	o.broadcastEvery = 1
	targets := []struct {
		name string
		cmd  *exec.Cmd
	}{
		{"pushbridge", exec.Command(pb, "serve")},
		{"minimal", exec.Command(mini, "-addr", "127.0.0.1:0")},
	}
	targets[0].cmd.Env = append(os.Environ(), "PORT=0", "BRIDGE_DEV=1", "AMQP_URL=", "REDIS_URL=", "BRIDGE_SEND_QUEUE=4096",
		"BRIDGE_SHUTDOWN_TIMEOUT=1s", "BRIDGE_PPROF=")
	res := make([]benchResult, len(targets))
	for i, t := range targets {
		fmt.Fprintf(stdout, "\n== %s: %d connections, every message a broadcast, %d msg/s for %s ==\n", t.name, o.conns, o.rate, o.duration)
		r, err := benchProcess(ctx, o, t.cmd, stdout)
		if err != nil && r == nil {
			return fmt.Errorf("bench -compare: %s: %w", t.name, err)
		}
		if err != nil {
			fmt.Fprintf(stdout, "(%s: %v)\n", t.name, err)
		}
		res[i] = *r
	}
	p, m := res[0], res[1]
	fmt.Fprintf(stdout, "\n%-28s %14s %14s %10s\n", "", "pushbridge", "minimal", "ratio")
	row := func(name string, a, b float64, unit string) {
		ratio := "-"
		if b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(stdout, "%-28s %14s %14s %10s\n", name, unit2(a, unit), unit2(b, unit), ratio)
	}
	row("deliveries/s", p.perSec, m.perSec, "")
	row("latency p50", p.p50, m.p50, "s")
	row("latency p99", p.p99, m.p99, "s")
	row("idle RSS per connection", p.rssPerConn, m.rssPerConn, "B")
	fmt.Fprintf(stdout, "%-28s %14d %14d\n", "lost / duplicated", p.lost+p.dups, m.lost+m.dups)
	fmt.Fprintln(stdout, "(ratio: pushbridge / minimal. One run on this machine: take medians of several, on a quiet machine, before believing a ratio.)")
	return nil
}

func unit2(v float64, unit string) string {
	switch unit {
	case "s":
		return time.Duration(v * float64(time.Second)).Round(time.Microsecond).String()
	case "B":
		return fmt.Sprintf("%.1f KiB", v/1024)
	}
	return fmt.Sprintf("%.0f", v)
}

// benchProcess starts cmd, reads the port it prints ("... listening on :PORT"), runs
// the bench against it with its pid (for RSS), and stops it.
func benchProcess(ctx context.Context, o benchOpts, cmd *exec.Cmd, stdout io.Writer) (*benchResult, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // the process's exit, whenever it comes
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(compareStopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	port := make(chan string, 1)
	go func() { // reads the first line, then drains stdout until the process ends
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line := sc.Text()
			port <- strings.TrimSpace(line[strings.LastIndex(line, ":")+1:])
		}
		close(port)
		_, _ = io.Copy(io.Discard, out)
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(compareStartTimeout):
	}
	if _, err := strconv.Atoi(p); err != nil {
		return nil, fmt.Errorf("did not say where it listens within %s", compareStartTimeout)
	}
	o.urls, o.pid = []string{"http://127.0.0.1:" + p}, cmd.Process.Pid
	return runBench(ctx, o, stdout)
}

// rssOf is the resident set of process pid, from /proc (Linux), in bytes.
func rssOf(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%g kB", &kb); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
