package presence

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// eventLog is Events that keeps what it is given.
type eventLog struct {
	mu   sync.Mutex
	ev   []string
	seqs map[string][]uint64 // per user
}

func (l *eventLog) Emit(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e.Type+" "+e.User+" "+e.Transport)
	if l.seqs == nil {
		l.seqs = make(map[string][]uint64)
	}
	l.seqs[e.User] = append(l.seqs[e.User], e.Seq)
}

func (l *eventLog) seqsOf(user string) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs[user])
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ev)
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.ev)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not waiting for an event
	}
}

// The memory-mode sequence: two tabs make one user.online; closing one, nothing;
// closing the last and coming back within the grace, nothing; closing it for longer
// than the grace, one user.offline; coming back, user.online again.
func TestMemoryTransitionsWithGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	log := &eventLog{}
	tr := NewMemoryTransitions(grace, log)
	ctx := context.Background()

	tr.Connected(ctx, "u", "ws")
	tr.Connected(ctx, "u", "sse")
	tr.Disconnected(ctx, "u")
	if got := log.String(); got != "[user.online u ws]" {
		t.Fatalf("after two tabs and one closed: %s, want one user.online", got)
	}
	// A reload: the last tab closes and a new one comes within the grace.
	tr.Disconnected(ctx, "u")
	start := time.Now()
	tr.Connected(ctx, "u", "ws")
	if time.Since(start) >= grace {
		t.Fatal("the machine is too slow to come back within the grace; the check below means nothing")
	}
	tr.Disconnected(ctx, "u")
	gone := time.Now()
	waitUntil(t, "user.offline", func() bool { return log.len() == 2 })
	if waited := time.Since(gone); waited < grace {
		t.Errorf("user.offline after %v, before the grace (%v)", waited, grace)
	}
	tr.Connected(ctx, "u", "poll")
	if got, want := log.String(), "[user.online u ws user.offline u  user.online u poll]"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	// Another user is independent; Close announces everyone still online.
	tr.Connected(ctx, "v", "ws")
	tr.Close()
	tr.Disconnected(ctx, "u")
	if got := log.String(); got != "[user.online u ws user.offline u  user.online u poll user.online v ws user.offline u  user.offline v ]" &&
		got != "[user.online u ws user.offline u  user.online u poll user.online v ws user.offline v  user.offline u ]" {
		t.Fatalf("after Close: %s", got)
	}
}
