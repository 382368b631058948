package e2e_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

// presenceTap is a test's own events exchange (the instances' BRIDGE_EVENTS_EXCHANGE)
// with a queue bound to keys (user.* when none), as a backend would bind one, recording
// every event by user with the time it arrived.
type presenceTap struct {
	Exchange string
	mu       sync.Mutex
	byUser   map[string][]seenEvent
	all      int
}

type seenEvent struct {
	Type string
	Seq  uint64    // the user's event number (body "seq")
	At   time.Time // when it arrived here
	Body []byte
}

func newPresenceTap(t *testing.T, keys ...string) *presenceTap {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{"user.*"}
	}
	done := make(chan struct{})
	started := false
	t.Cleanup(func() { // after EventsQueue's: its channel's close ends the loop below
		if started {
			<-done
		}
	})
	x, got := apptest.EventsQueue(t, "pbtest_online", keys...)
	tap := &presenceTap{Exchange: x, byUser: make(map[string][]seenEvent)}
	started = true
	go func() {
		defer close(done)
		for d := range got {
			user, _ := d.Headers["x-user-id"].(string)
			var body struct{ Seq uint64 }
			_ = json.Unmarshal(d.Body, &body) // a body without seq is caught by the checks
			tap.mu.Lock()
			tap.byUser[user] = append(tap.byUser[user], seenEvent{Type: d.RoutingKey, Seq: body.Seq, At: time.Now(), Body: d.Body})
			tap.all++
			tap.mu.Unlock()
		}
	}()
	return tap
}

// events is what arrived for user so far, in the order of their numbers (events made
// on different instances may arrive in another).
func (p *presenceTap) events(user string) []seenEvent {
	p.mu.Lock()
	ev := slices.Clone(p.byUser[user])
	p.mu.Unlock()
	slices.SortStableFunc(ev, func(a, b seenEvent) int { return cmp.Compare(a.Seq, b.Seq) })
	return ev
}

// arrivedOutOfOrder counts user's events that arrived after one with a higher number.
func (p *presenceTap) arrivedOutOfOrder(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	var top uint64
	for _, e := range p.byUser[user] {
		if e.Seq < top {
			n++
		}
		top = max(top, e.Seq)
	}
	return n
}

// sequenceError says what is wrong with user's events, or "": numbered one more each
// without gap or repeat, alternating from user.online.
func (p *presenceTap) sequenceError(user string) string {
	ev := p.events(user)
	for k, e := range ev {
		want := "user.online"
		if k%2 == 1 {
			want = "user.offline"
		}
		if e.Seq == 0 || e.Seq != ev[0].Seq+uint64(k) || e.Type != want {
			return fmt.Sprintf("event %d is %s #%d, want %s #%d", k+1, e.Type, e.Seq, want, ev[0].Seq+uint64(k))
		}
	}
	return ""
}

// types is user's events as "on"/"off", in arrival order.
func (p *presenceTap) types(user string) string {
	var b []string
	for _, e := range p.events(user) {
		b = append(b, strings.TrimPrefix(e.Type, "user."))
	}
	return strings.Join(b, " ")
}

func (p *presenceTap) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all
}

// waitEvents waits until user has n events.
func (p *presenceTap) waitEvents(t *testing.T, user string, n int, timeout time.Duration) {
	t.Helper()
	apptest.Eventually(t, timeout, fmt.Sprintf("%d presence events of %s (have: %s)", n, user, p.types(user)), func() bool {
		return len(p.events(user)) >= n
	})
}

// quiet lets d pass (the grace and beats in which a wrong event would be sent) and
// then checks user has exactly want.
func (p *presenceTap) quiet(t *testing.T, d time.Duration, user, want string) {
	t.Helper()
	end := time.Now().Add(d)
	apptest.Eventually(t, d+time.Minute, "the quiet period to pass", func() bool { return time.Now().After(end) })
	if got := p.types(user); got != want {
		t.Fatalf("events of %s: %q, want %q", user, got, want)
	}
	if err := p.sequenceError(user); err != "" {
		t.Fatalf("events of %s: %s", user, err)
	}
}

// wsTab is a bare bridge.v1 WebSocket of one user: open once its welcome arrived
// (the server attached it), closed by the test.
type wsTab struct {
	conn  *websocket.Conn
	ended chan struct{}
}

func openWS(ctx context.Context, p *proc, user string) (*wsTab, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{transport.SubprotocolV1}}
	conn, _, err := d.DialContext(ctx, p.wsURL("/ws?"+url.Values{"user": {user}}.Encode()), nil)
	if err != nil {
		return nil, fmt.Errorf("ws %s on %s: %w", user, p.Name, err)
	}
	welcome := make(chan struct{})
	w := &wsTab{conn: conn, ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		first := true
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
			if first {
				first = false
				close(welcome)
			}
		}
	}()
	select {
	case <-welcome:
		return w, nil
	case <-w.ended:
		return nil, fmt.Errorf("ws %s on %s: closed before its welcome", user, p.Name)
	case <-time.After(10 * time.Second):
		conn.Close()
		return nil, fmt.Errorf("ws %s on %s: no welcome within 10s", user, p.Name)
	}
}

func mustWS(t *testing.T, p *proc, user string) *wsTab {
	t.Helper()
	w, err := openWS(context.Background(), p, user)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// close closes the tab as a browser does (a close frame, then the socket).
func (w *wsTab) close() {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	w.conn.Close()
	<-w.ended
}

const (
	onlineGrace = time.Second     // BRIDGE_OFFLINE_GRACE of these tests
	onlineTTL   = 2 * time.Second // BRIDGE_PRESENCE_TTL: a beat every 667ms
)

func onlineEnv(t *testing.T, tap *presenceTap, grace time.Duration) map[string]string {
	env, _ := clusterEnv(t, map[string]string{
		"BRIDGE_EVENTS_EXCHANGE": tap.Exchange,
		"BRIDGE_OFFLINE_GRACE":   grace.String(),
		"BRIDGE_PRESENCE_TTL":    onlineTTL.String(),
	})
	return env
}

// Two instances, one user with tabs on both: exactly one user.online; closing one tab,
// nothing; closing the last, exactly one user.offline after the grace; reconnecting
// within the grace (a reload, on the other instance), nothing.
func TestOnlineAcrossInstances(t *testing.T) {
	tap := newPresenceTap(t)
	ps := startCluster(t, 2, onlineEnv(t, tap, onlineGrace))
	a, b := ps[0], ps[1]
	beat := onlineTTL / 3

	t1 := mustWS(t, a, "u")
	t2 := mustWS(t, b, "u")
	tap.waitEvents(t, "u", 1, 20*time.Second)
	t1.close()
	tap.quiet(t, onlineGrace+3*beat, "u", "online")

	closed := time.Now()
	t2.close()
	tap.waitEvents(t, "u", 2, 20*time.Second)
	off := tap.events("u")[1]
	t.Logf("user.offline %v after the last tab closed (grace %v, beat %v)", off.At.Sub(closed).Round(time.Millisecond), onlineGrace, beat)
	if off.Type != "user.offline" || off.At.Sub(closed) < onlineGrace {
		t.Fatalf("after the last tab closed: %s at +%v, want user.offline after the grace %v", off.Type, off.At.Sub(closed), onlineGrace)
	}
	tap.quiet(t, 3*beat, "u", "online offline")

	// A page reload: the tab on A closes, the page comes back on B within the grace.
	t3 := mustWS(t, a, "u")
	tap.waitEvents(t, "u", 3, 20*time.Second)
	t3.close()
	reload := time.Now()
	t4 := mustWS(t, b, "u")
	if back := time.Since(reload); back >= onlineGrace {
		t.Fatalf("the page took %v to come back, not within the grace (%v): the check below means nothing", back, onlineGrace)
	}
	tap.quiet(t, onlineGrace+3*beat, "u", "online offline online")
	t4.close()
	tap.waitEvents(t, "u", 4, 20*time.Second)
	tap.quiet(t, 3*beat, "u", "online offline online offline")
}

// 200 users opening and closing tabs at random across three instances: for every user
// the events alternate, starting with user.online, and end in the state the user is
// really in.
func TestOnlineChurn(t *testing.T) {
	const (
		users = 200
		churn = 20 * time.Second
		grace = 300 * time.Millisecond
	)
	tap := newPresenceTap(t)
	ps := startCluster(t, 3, onlineEnv(t, tap, grace))
	ctx, cancel := context.WithTimeout(context.Background(), churn)
	defer cancel()
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		opened, closes int
		failed         []error
	)
	final := make([]int, users) // tabs open at the end, per user
	var leftOpen []*wsTab
	for i := range users {
		wg.Go(func() {
			user := fmt.Sprintf("c%03d", i)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var tabs []*wsTab
			for ctx.Err() == nil {
				if len(tabs) < 2 && (len(tabs) == 0 || rng.IntN(2) == 0) {
					// A tab that could not open (the CPUs are shared: a dial may time
					// out) is no tab: the user's state is what opened.
					if w, err := openWS(ctx, ps[rng.IntN(len(ps))], user); err != nil {
						if ctx.Err() == nil { // not the end of the run
							mu.Lock()
							failed = append(failed, err)
							mu.Unlock()
						}
					} else {
						tabs = append(tabs, w)
						mu.Lock()
						opened++
						mu.Unlock()
					}
				} else {
					k := rng.IntN(len(tabs))
					tabs[k].close()
					tabs = slices.Delete(tabs, k, k+1)
					mu.Lock()
					closes++
					mu.Unlock()
				}
				// A user's pace: some gaps shorter than the grace (a reload), some longer.
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(rng.IntN(800)) * time.Millisecond):
				}
			}
			// Half the users close every tab at the end.
			if rng.IntN(2) == 0 {
				for _, w := range tabs {
					w.close()
				}
				tabs = nil
			}
			mu.Lock()
			final[i] = len(tabs)
			leftOpen = append(leftOpen, tabs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	defer func() {
		for _, w := range leftOpen {
			w.close()
		}
	}()
	if len(failed) > 0 {
		t.Logf("%d tabs failed to open, first: %v", len(failed), failed[0])
	}
	if len(failed)*20 > opened {
		t.Fatalf("%d of %d tabs failed to open: the run shows little", len(failed), opened+len(failed))
	}
	want := func(i int) string {
		if final[i] > 0 {
			return "user.online"
		}
		return "user.offline"
	}
	settled := func() bool {
		for i := range users {
			ev := tap.events(fmt.Sprintf("c%03d", i))
			if len(ev) == 0 || ev[len(ev)-1].Type != want(i) {
				return false
			}
		}
		return true
	}
	apptest.Eventually(t, 30*time.Second, "every user's last event to be their state", settled)
	// Anything still on its way would arrive within the grace and two beats.
	end := time.Now().Add(grace + 2*onlineTTL/3)
	apptest.Eventually(t, time.Minute, "the quiet period to pass", func() bool { return time.Now().After(end) })
	var ons, offs, bad, wrongEnd, late int
	for i := range users {
		user := fmt.Sprintf("c%03d", i)
		ev := tap.events(user)
		late += tap.arrivedOutOfOrder(user)
		if err := tap.sequenceError(user); err != "" {
			bad++
			t.Errorf("%s: %s (events by number: %s)", user, err, tap.types(user))
		}
		for _, e := range ev {
			if e.Type == "user.online" {
				ons++
			} else {
				offs++
			}
		}
		if len(ev) == 0 || ev[len(ev)-1].Type != want(i) {
			wrongEnd++
			t.Errorf("%s: ends with %s open tabs but events %s", user, fmt.Sprint(final[i]), tap.types(user))
		}
	}
	stillOn := 0
	for _, n := range final {
		if n > 0 {
			stillOn++
		}
	}
	t.Logf("%d users, 3 instances, %v: %d tabs opened (%d failed to), %d closed; %d user.online, %d user.offline (%d arrived after a higher seq); %d users online at the end; %d not alternating with seq one more each, %d ending in the wrong state",
		users, churn, opened, len(failed), closes, ons, offs, late, stillOn, bad, wrongEnd)
	if offs == 0 || ons == offs {
		t.Errorf("%d offline and %d online events: the run exercised nothing", offs, ons)
	}
}

// kill -9 of the instance holding a user: exactly one user.offline, from the survivor,
// within BRIDGE_PRESENCE_TTL + BRIDGE_OFFLINE_GRACE + one beat (the grace counts from
// the dead lease's deadline; the lease is taken for dead TTL/10 past it, within the
// grace here); a user held by the survivor stays online.
func TestOnlineInstanceKilled(t *testing.T) {
	tap := newPresenceTap(t)
	ps := startCluster(t, 2, onlineEnv(t, tap, onlineGrace))
	a, b := ps[0], ps[1]
	mustWS(t, a, "k")
	stay := mustWS(t, b, "s")
	defer stay.close()
	tap.waitEvents(t, "k", 1, 20*time.Second)
	tap.waitEvents(t, "s", 1, 20*time.Second)
	a.kill(t)
	killed := time.Now()
	beat := onlineTTL / 3
	bound := onlineTTL + max(onlineGrace, onlineTTL/10) + beat
	tap.waitEvents(t, "k", 2, bound+30*time.Second)
	took := tap.events("k")[1].At.Sub(killed)
	t.Logf("user.offline %v after kill -9 (TTL %v + grace %v + a beat = %v)", took.Round(time.Millisecond), onlineTTL, onlineGrace, bound)
	if took > bound+2*time.Second { // the event's way through the outbox and RabbitMQ, on shared CPUs
		t.Errorf("user.offline %v after the kill, want within %v", took, bound)
	}
	tap.quiet(t, onlineGrace+3*beat, "k", "online offline")
	if got := tap.types("s"); got != "online" {
		t.Fatalf("the survivor's user: %q, want online only", got)
	}
}

// A clean stop (SIGTERM, the drain sends the clients away) with the user back on
// another instance within the grace: no event. A user who does not come back is
// announced offline by the survivor after the grace.
func TestOnlineCleanStop(t *testing.T) {
	tap := newPresenceTap(t)
	env := onlineEnv(t, tap, onlineGrace)
	env["BRIDGE_SHUTDOWN_TIMEOUT"] = "2s"
	ps := startCluster(t, 2, env)
	a, b := ps[0], ps[1]
	back := mustWS(t, a, "back")
	mustWS(t, a, "gone")
	tap.waitEvents(t, "back", 1, 20*time.Second)
	tap.waitEvents(t, "gone", 1, 20*time.Second)
	stopped := make(chan time.Duration, 1)
	go func() { stopped <- a.term(t) }()
	<-back.ended // the drain closed it
	again := mustWS(t, b, "back")
	defer again.close()
	t.Logf("A stopped in %v", <-stopped)
	tap.waitEvents(t, "gone", 2, 20*time.Second)
	tap.quiet(t, onlineGrace+3*onlineTTL/3, "gone", "online offline")
	if got := tap.types("back"); got != "online" {
		t.Fatalf("user back on B within the grace: %q, want online only", got)
	}
}
