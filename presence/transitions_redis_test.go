package presence

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// transNode is one instance's share of presence in a transitions test: its registry
// lease, its directory and its transitions, with connections attached and detached in
// the hub's order (directory first on the way in, transitions first on the way out).
type transNode struct {
	t     *testing.T
	id    string
	inst  *RedisInstances
	dir   *RedisDirectory
	tr    *RedisTransitions
	since time.Time
}

func newTransNode(t *testing.T, rdb redis.UniversalClient, opts RedisOptions, id string, grace time.Duration, ev Events) *transNode {
	opts.Instance = id
	n := &transNode{t: t, id: id, inst: NewRedisInstances(rdb, opts), dir: NewRedisDirectory(rdb, opts),
		tr: NewRedisTransitions(rdb, opts, grace, ev, nil), since: time.Now()}
	n.beat()
	return n
}

// transNodes starts instances ids on a fresh prefix of the test Redis, with presence
// TTL ttl and offline grace grace, all reporting to one log.
func transNodes(t *testing.T, ttl, grace time.Duration, ids ...string) (*eventLog, []*transNode) {
	rdb, opts := newTestRedis(t)
	opts.PresenceTTL = ttl
	log := &eventLog{}
	var ns []*transNode
	for _, id := range ids {
		ns = append(ns, newTransNode(t, rdb, opts, id, grace, log))
	}
	return log, ns
}

func (n *transNode) entry(user string, tab int) Entry {
	return Entry{User: user, Instance: n.id, Transport: "ws", Since: n.since.Add(time.Duration(tab))}
}

func (n *transNode) connect(user string, tab int) {
	n.t.Helper()
	ctx := testCtx(n.t)
	if err := n.dir.Add(ctx, n.entry(user, tab)); err != nil {
		n.t.Fatal(err)
	}
	n.tr.Connected(ctx, user, "ws")
}

func (n *transNode) disconnect(user string, tab int) {
	n.t.Helper()
	ctx := testCtx(n.t)
	n.tr.Disconnected(ctx, user)
	if err := n.dir.Remove(ctx, n.entry(user, tab)); err != nil {
		n.t.Fatal(err)
	}
}

// beat is what app's heartbeat does: registry, directory, transitions.
func (n *transNode) beat() {
	n.t.Helper()
	ctx := testCtx(n.t)
	if _, err := n.inst.Beat(ctx, Instance{ID: n.id}); err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.dir.Refresh(ctx); err != nil {
		n.t.Fatal(err)
	}
	if err := n.tr.Beat(ctx, false); err != nil {
		n.t.Fatal(err)
	}
}

// beatUntil beats every node until cond holds or d passes, and says whether it held.
func beatUntil(d time.Duration, cond func() bool, nodes ...*transNode) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, n := range nodes {
			n.beat()
		}
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond) // a heartbeat's tick, shortened
	}
	return cond()
}

// Two instances, one user with tabs on both: one user.online; closing one tab,
// nothing; closing the last, one user.offline, not before the grace; a reconnect
// within the grace, nothing; back later, user.online again. Both instances claim
// every beat, so the single events show that the claims exclude each other.
func TestRedisTransitions(t *testing.T) {
	const grace = 300 * time.Millisecond
	log, ns := transNodes(t, 3*time.Second, grace, "A", "B")
	a, b := ns[0], ns[1]
	start := time.Now()

	a.connect("u", 1)
	b.connect("u", 2)
	if got := log.String(); got != "[user.online u ws]" {
		t.Fatalf("two tabs on two instances: %s, want one user.online", got)
	}
	a.disconnect("u", 1)
	if beatUntil(2*grace, func() bool { return log.len() > 1 }, a, b) {
		t.Fatalf("one of two tabs closed: %s, want nothing more", log)
	}
	// A reload: the last tab closes and the page comes back within the grace, on the
	// other instance.
	b.disconnect("u", 2)
	a.connect("u", 3)
	if beatUntil(2*grace, func() bool { return log.len() > 1 }, a, b) {
		t.Fatalf("reconnect within the grace: %s, want nothing more", log)
	}
	gone := time.Now()
	a.disconnect("u", 3)
	if !beatUntil(10*time.Second, func() bool { return log.len() == 2 }, a, b) {
		t.Fatalf("last tab closed: %s, want user.offline", log)
	}
	if waited := time.Since(gone); waited < grace {
		t.Errorf("user.offline after %v, before the grace (%v)", waited, grace)
	}
	beatUntil(2*grace, func() bool { return log.len() > 2 }, a, b)
	b.connect("u", 4)
	if got, want := log.String(), "[user.online u ws user.offline u  user.online u ws]"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	// The tabs of one user closing on both instances at once: the last script sees
	// no holder, whichever it is.
	a.connect("u", 5)
	done := make(chan struct{})
	go func() { defer close(done); a.disconnect("u", 5) }()
	b.disconnect("u", 4)
	<-done
	if !beatUntil(10*time.Second, func() bool { return log.len() == 4 }, a, b) {
		t.Fatalf("both last tabs closed at once: %s, want user.offline", log)
	}
	if beatUntil(2*grace, func() bool { return log.len() > 4 }, a, b) {
		t.Fatalf("after the offline: %s, want nothing more", log)
	}
	seqs := log.seqsOf("u")
	if len(seqs) != 4 || seqs[0] <= uint64(start.UnixMilli()) {
		t.Fatalf("event numbers %v, want 4 starting above the clock's ms at the start (%d)", seqs, start.UnixMilli())
	}
	for i, n := range seqs {
		if n != seqs[0]+uint64(i) {
			t.Fatalf("event numbers %v, want one more each", seqs)
		}
	}
}

// A crashed instance's user goes offline once its lease and the grace ran out,
// announced by exactly one of the survivors; a clean stop (Close) hands its users to
// the survivors the same way.
func TestRedisTransitionsCrashedInstance(t *testing.T) {
	const ttl, grace = 600 * time.Millisecond, 200 * time.Millisecond
	log, ns := transNodes(t, ttl, grace, "A", "B", "C")
	a, b, c := ns[0], ns[1], ns[2]
	for i := range 5 {
		a.connect(fmt.Sprint("u", i), i)
	}
	c.connect("w", 1)
	if log.len() != 6 {
		t.Fatalf("six users connected: %s", log)
	}
	a.beat()
	crashed := time.Now() // A beats no more and closes nothing
	if !beatUntil(10*time.Second, func() bool { return log.len() == 11 }, b, c) {
		t.Fatalf("A crashed: %s, want its five users offline", log)
	}
	took := time.Since(crashed)
	// Due at A's lease deadline plus the grace, found once the lease is crashGrace
	// late; the beats here come every 10 ms, so a beat is the scheduling slack.
	bound := ttl + max(grace, crashGrace(ttl))
	t.Logf("A's users offline %v after its last beat (bound TTL + max(grace, TTL/10) + a beat = %v + a beat)", took, bound)
	if took < ttl {
		t.Errorf("offline %v after the crash, before A's lease ran out (%v)", took, ttl)
	}
	if slack := 500 * time.Millisecond; took > bound+slack {
		t.Errorf("offline %v after the crash, want within %v (+%v of scheduling under -race)", took, bound, slack)
	}
	if beatUntil(2*grace, func() bool { return log.len() > 11 }, b, c) {
		t.Fatalf("after the crash's offlines: %s, want nothing more", log)
	}
	// C stops cleanly with w still connected: B announces w after the grace.
	c.tr.Close()
	if err := c.inst.Leave(testCtx(t), "C"); err != nil {
		t.Fatal(err)
	}
	if !beatUntil(10*time.Second, func() bool { return log.len() == 12 }, b) {
		t.Fatalf("C stopped: %s, want w offline", log)
	}
	if got := log.String(); !strings.HasSuffix(got, "user.offline w ]") {
		t.Fatalf("last event: %s, want w's user.offline", got)
	}
}

// An instance a survivor took for dead holds its users again at its next beat —
// user.online — after a lapse its directory saw (Redis lost its presence), and also
// when it was only late (its beat did not come in time, or its clock is behind) and
// its directory saw no lapse: it finds that the set of the users it holds was handed
// over.
func TestRedisTransitionsLapse(t *testing.T) {
	for _, lapsed := range []bool{true, false} {
		t.Run(fmt.Sprint("lapsed=", lapsed), func(t *testing.T) {
			const ttl, grace = 600 * time.Millisecond, 100 * time.Millisecond
			log, ns := transNodes(t, ttl, grace, "A", "B")
			a, b := ns[0], ns[1]
			a.connect("u", 1)
			// A pauses past its lease: B takes it for dead and announces u offline.
			if !beatUntil(10*time.Second, func() bool { return log.len() == 2 }, b) {
				t.Fatalf("A silent: %s, want u offline", log)
			}
			ctx := testCtx(t)
			if _, err := a.dir.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.tr.Beat(ctx, lapsed); err != nil {
				t.Fatal(err)
			}
			if got, want := log.String(), "[user.online u ws user.offline u  user.online u ws]"; got != want {
				t.Fatalf("after A's beat: %s, want %s", got, want)
			}
			if beatUntil(2*grace+ttl, func() bool { return log.len() > 3 }, a, b) {
				t.Fatalf("A back: %s, want nothing more", log)
			}
		})
	}
}
