package app

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestKeepAliveOnAccepted: every accepted connection has TCP keepalive on, tuned from
// BRIDGE_HEARTBEAT so a vanished peer is found within two heartbeats.
func TestKeepAliveOnAccepted(t *testing.T) {
	for _, tc := range []struct {
		heartbeat              time.Duration
		idle, interval, probes int
	}{
		{25 * time.Second, 25, 7, 3}, // 25 + 3×7 = 46 s ≤ 50 s
		{8 * time.Second, 8, 2, 3},
		{time.Second, 1, 1, 3}, // the kernel's floor is a second
	} {
		ln, err := listen(context.Background(), &Config{Port: 0, Heartbeat: tc.heartbeat})
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		_ = raw.Control(func(fd uintptr) {
			for name, opt := range map[string][2]int{
				"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
				"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
				"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
				"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
			} {
				v, err := syscall.GetsockoptInt(int(fd), opt[0], opt[1])
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				got[name] = v
			}
		})
		want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": tc.idle, "TCP_KEEPINTVL": tc.interval, "TCP_KEEPCNT": tc.probes}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("heartbeat %s: %s = %d, want %d", tc.heartbeat, k, got[k], v)
			}
		}
		c.Close()
		s.Close()
		ln.Close()
	}
}

// TestRoomFor: connections never take the descriptors the process needs for itself.
func TestRoomFor(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{1024, 768}, {20000, 19744}, {256, 192}, {8, 6}, {1, 1}, {1 << 62, 1<<31 - 1},
	} {
		if got := roomFor(tc.nofile); got != tc.want {
			t.Errorf("roomFor(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}
