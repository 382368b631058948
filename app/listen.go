package app

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"syscall"
	"time"
)

// TCP keepalive of accepted connections.
const (
	// keepAliveProbes unanswered probes end a connection. With the idle time one
	// heartbeat and the probes a quarter of one apart, a peer that vanished (a host
	// gone, a NAT that dropped the flow) is found within two heartbeats, whatever the
	// transport is doing above TCP. The kernel counts in whole seconds.
	keepAliveProbes = 3
)

// File descriptors the process keeps for itself.
const (
	// fdReserve is what BRIDGE_MAX_CONNS leaves of the open-file limit for everything
	// that is not a client connection: the listener, Redis and AMQP connections, the
	// refusals being written, files. Running out of descriptors stops accept for
	// everyone, so the limit on connections must be reached first.
	fdReserve = 256
)

// keepAliveFor is the TCP keepalive of accepted connections, from BRIDGE_HEARTBEAT.
func keepAliveFor(heartbeat time.Duration) net.KeepAliveConfig {
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     heartbeat,
		Interval: max(heartbeat/4, time.Second),
		Count:    keepAliveProbes,
	}
}

// listen opens the HTTP listener on cfg's address (see Config.listenAddr), with TCP
// keepalive tuned on every connection it accepts.
func listen(ctx context.Context, cfg *Config) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAliveFor(cfg.Heartbeat)}
	ln, err := lc.Listen(ctx, "tcp", cfg.listenAddr())
	if err != nil {
		name := "PORT"
		if cfg.ListenSet {
			name = "BRIDGE_LISTEN"
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ln, nil
}

// connCap is how many connections this process may hold: BRIDGE_MAX_CONNS, or less
// when the open-file limit would run out first (Go raises the soft limit to the hard
// one at start; `prlimit`, systemd and containers set the hard one).
func connCap(want int, log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return want
	}
	room := roomFor(rl.Cur)
	if want <= room {
		return want
	}
	log.Info("BRIDGE_MAX_CONNS lowered to what the open-file limit allows",
		"BRIDGE_MAX_CONNS", want, "open_file_limit", rl.Cur, "held", room)
	return room
}

// roomFor is how many connections nofile descriptors allow, fdReserve (at most a
// quarter of them) kept back.
func roomFor(nofile uint64) int {
	if nofile > math.MaxInt32 {
		return math.MaxInt32
	}
	n := int(nofile)
	return max(n-min(fdReserve, n/4), 1)
}
