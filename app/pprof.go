package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// pprofHeaderTimeout bounds how long a profile request's headers may take: the
// listener is for an operator's go tool pprof, not for clients that trickle.
const pprofHeaderTimeout = 10 * time.Second

// pprofMutexFraction samples one in this many mutex contention events for the mutex
// profile: enough to see where the hub's locks are contended, cheap enough to leave
// on while -pprof is set (it is off otherwise).
const pprofMutexFraction = 100

// pprofBlockRate samples one blocking event per this many nanoseconds blocked for the
// block profile: waits shorter than ~10µs are the scheduler's business, not ours.
const pprofBlockRate = 10_000

// checkPprofAddr accepts host:port for the profiling listener. The profiles show the
// process's memory and code and cost CPU to take, so the host must be a loopback one
// (127.0.0.1, ::1, localhost) unless remote is set: an empty host or 0.0.0.0 would
// open them to the network.
func checkPprofAddr(addr string, remote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 127.0.0.1:6060: %w", err)
	}
	if remote || host == "localhost" || isLoopback(host) {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("%s listens on %s, not loopback: profiles would be open to the network (set BRIDGE_PPROF_ALLOW_REMOTE=true if that is meant)", addr, host)
}

// startPprof serves net/http/pprof's handlers on addr, on a mux of its own (never the
// gateway's routes, never http.DefaultServeMux), until ctx ends.
func startPprof(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_PPROF: %w", err)
	}
	runtime.SetMutexProfileFraction(pprofMutexFraction)
	runtime.SetBlockProfileRate(pprofBlockRate)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: pprofHeaderTimeout}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener stopped", "err", err)
		}
	}()
	go func() { // the listener's exit: it ends with the process's serve
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Warn("pprof listening: profiles of this process are served here", "addr", ln.Addr().String())
	return ln.Addr(), nil
}
