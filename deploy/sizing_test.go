package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The memory one open connection costs, from BENCHMARKS.md ("Memory per idle
// connection"). docs/deploy.md derives every connection limit from these; the tests
// hold the manifests to the same arithmetic.
const (
	// sseLiveBytes is the live memory of an idle SSE stream after a GC (19.2 KB heap,
	// two goroutines with 10.2 KB of stacks): the dearest transport, so a limit sized
	// with it holds for any mix (an idle WebSocket is 8,346 B).
	sseLiveBytes = 29 << 10
	// gcHeadroom: with GOGC=100 the heap grows to twice the live heap before the next
	// collection; the stacks are doubled too, as margin.
	gcHeadroom = 2
	// kernelSocketBytes is what the kernel holds for an idle TCP socket, not counted by
	// Go: the slab objects of /proc/slabinfo on the benchmark machine, TCPv6 2,496 +
	// sock_inode_cache 832 + filp 192 + dentry 192 + eventpoll_epi 128 bytes.
	kernelSocketBytes = 3840
	// connBudget is what one connection is planned at: 63,232 B = 61.75 KiB. It holds
	// for every TCP connection BRIDGE_MAX_CONNS counts: an idle keep-alive connection
	// (a client's between its POSTs, a poll's between polls, the proxy's pooled ones)
	// is 18.4 KB live, one goroutine (BENCHMARKS.md), less than an SSE stream.
	connBudget = gcHeadroom*sseLiveBytes + kernelSocketBytes
)

// uncountedHeadroom is how far a platform's limit of requests in flight stays under
// BRIDGE_MAX_CONNS, which counts every TCP connection from accept: room for the
// connections in flight the platform does not count (its health checks and probes,
// publishers on the private network), so that the app never refuses what the platform
// routes. Idle connections need no room: at the limit they are closed to make way.
const uncountedHeadroom = 1000

// checkUnder fails unless a platform limit of what limit counts stays uncountedHeadroom
// under BRIDGE_MAX_CONNS.
func checkUnder(t *testing.T, what string, limit, maxConns int) {
	t.Helper()
	if limit+uncountedHeadroom > maxConns {
		t.Errorf("%s %d + %d of headroom > BRIDGE_MAX_CONNS %d: the platform would route requests the app refuses (503), its own probes first when full",
			what, limit, uncountedHeadroom, maxConns)
	}
}

// Memory set aside for what is not per connection: the process at rest (11.5 MiB RSS
// measured), batches of deliveries, the send queues of busy clients, the replays of a
// wave of reconnecting clients.
const (
	// flyReserve also holds the guest kernel and Fly's init, which live in the VM's memory.
	flyReserve = 256 << 20
	// cloudRunReserve: the container's limit holds the process only.
	cloudRunReserve = 128 << 20
)

// checkFits fails unless limit connections at connBudget each, plus reserve, fit in
// memory, and unless GOMEMLIMIT (when set) is below memory.
func checkFits(t *testing.T, what string, limit int, memory, reserve int64, goMemLimit string) {
	t.Helper()
	if limit <= 0 {
		t.Errorf("%s = %d, want a positive limit", what, limit)
		return
	}
	need := int64(limit)*connBudget + reserve
	t.Logf("%s: %d connections x %d B + %d MiB reserve = %d MiB of %d MiB (room for %d)",
		what, limit, connBudget, reserve>>20, need>>20, memory>>20, (memory-reserve)/connBudget)
	if need > memory {
		t.Errorf("%s = %d does not fit: %d x %d B + %d MiB reserve = %d MiB > %d MiB of memory; at most %d",
			what, limit, limit, connBudget, reserve>>20, need>>20, memory>>20, (memory-reserve)/connBudget)
	}
	if goMemLimit == "" {
		return
	}
	gml, err := parseBytes(goMemLimit)
	if err != nil {
		t.Errorf("GOMEMLIMIT: %v", err)
	} else if gml >= memory {
		t.Errorf("GOMEMLIMIT = %s is not below the memory, %d MiB: the GC would never work harder before the kill", goMemLimit, memory>>20)
	}
}

// byteUnits are the suffixes of the sizes the manifests use: Kubernetes quantities
// (512Mi), Fly's memory (1gb, which Fly counts in MiB) and GOMEMLIMIT (384MiB).
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"ki": 1 << 10, "kib": 1 << 10, "kb": 1 << 10,
	"mi": 1 << 20, "mib": 1 << 20, "mb": 1 << 20,
	"gi": 1 << 30, "gib": 1 << 30, "gb": 1 << 30,
}

func parseBytes(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	unit, ok := byteUnits[strings.ToLower(s[i:])]
	if err != nil || !ok || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 512Mi, 1gb or 384MiB", s)
	}
	return n * unit, nil
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"512Mi": 512 << 20, "1gb": 1 << 30, "384MiB": 384 << 20, "2048": 2048} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Mi", "512M", "1.5Gi", "-1Gi", "512 Mi"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
