package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// jitterRetry is how long a client waits before dialling again after a failed
// reconnect: long enough not to spin against a server that refuses, short enough not
// to dominate the replay latency.
const jitterRetry = 50 * time.Millisecond

// replayDefinition is what -jitter's replay latency measures, printed in -h and in
// the report so a figure is never read without it.
const replayDefinition = "replay latency: from the moment a killed client starts to reconnect until it is " +
	"connected again (its welcome; poll: its first answer) and has received every message of its " +
	"streams (its user's and the broadcasts) whose publish had been acknowledged before that moment"

// acked is, per stream (a user, or "*" for broadcasts), the sequence number of the last
// message whose publish was acknowledged: what a reconnecting client must catch up to.
type acked map[string]*atomic.Int64

func newAcked(users int) acked {
	a := acked{"*": new(atomic.Int64)}
	for i := range users {
		a[fmt.Sprintf("u%d", i)] = new(atomic.Int64)
	}
	return a
}

// jitterStats are counted by every jittering client at once.
type jitterStats struct {
	killing    atomic.Bool  // kills happen only while this is set (while publishing)
	kills      atomic.Int64 // sockets the bench cut
	reconnects atomic.Int64 // connections opened again, after a kill or the server's close
	dialErrs   atomic.Int64 // reconnects that failed and were tried again
	// reconnectsTo counts the reconnects by the instance (index in o.urls) they went to
	reconnectsTo []atomic.Int64
	// moved and stayed count the welcomes (ws, sse) after a reconnect by whether the
	// instance they name is another than the one of the client's previous welcome
	moved, stayed atomic.Int64
}

// jitterClient is one client that is killed about every o.jitter and resumes with its
// cursor by bridge.js's rule: the id of the last message seen, else its first welcome's
// cursor. With several instances it reconnects to the next one in o.urls each time.
type jitterClient struct {
	*benchClient
	src        net.IP
	cursor     string
	at         int    // the instance (index in o.urls) it is connected to, or dialling
	welcomedBy string // the instance its last welcome named (ws, sse)

	mu      sync.Mutex
	conn    resumeConn
	stopped bool

	// the catch-up being timed: since when, and the sequence numbers to reach
	catching  bool
	hello     bool
	since     time.Time
	wantUser  int64
	wantBcast int64
	replay    []time.Duration
}

// run reads c's connections until stop, dialling again whenever one ends, each time
// to the next of dials (one per instance).
func (c *jitterClient) run(ctx context.Context, o benchOpts, first resumeConn, dials []resumeDial,
	a acked, st *jitterStats, got *atomic.Int64) {
	conn := first
	for {
		if !c.setConn(conn) {
			return
		}
		// The kill comes at a moment uniform in [D/2, 3D/2): about every D. One that
		// falls before publishing starts is drawn again, so no client escapes; once
		// the connection has ended the timer neither kills nor re-arms.
		var ended atomic.Bool
		cur := conn // the timer's own copy: conn is dialled again below
		var kill *time.Timer
		kill = time.AfterFunc(time.Duration(math.MaxInt64), func() { // armed below, once kill is set
			switch {
			case ended.Load():
			case st.killing.Load():
				st.kills.Add(1)
				cur.close()
			default:
				kill.Reset(o.jitter/2 + rand.N(o.jitter))
			}
		})
		kill.Reset(o.jitter/2 + rand.N(o.jitter))
		cur.read(func(ev resumeEvent) { c.see(ev, st, got) })
		ended.Store(true)
		kill.Stop()
		c.at = (c.at + 1) % len(dials) // behind a load balancer it may land elsewhere: here it always does
		for {
			if c.isStopped() || ctx.Err() != nil {
				return
			}
			c.catching, c.hello, c.since = true, false, time.Now()
			c.wantUser, c.wantBcast = a[c.user].Load(), a["*"].Load()
			var err error
			if conn, err = dials[c.at](c.user, c.src, c.cursor); err == nil {
				st.reconnects.Add(1)
				st.reconnectsTo[c.at].Add(1)
				break
			}
			st.dialErrs.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitterRetry):
			}
		}
	}
}

// see applies bridge.js's cursor rule, counts a message, and ends a timed catch-up.
func (c *jitterClient) see(ev resumeEvent, st *jitterStats, got *atomic.Int64) {
	if ev.hello {
		c.hello = true
		if ev.instance != "" {
			switch c.welcomedBy {
			case "":
			case ev.instance:
				st.stayed.Add(1)
			default:
				st.moved.Add(1)
			}
			c.welcomedBy = ev.instance
		}
		if c.cursor == "" {
			c.cursor = ev.cursor
		}
	} else if ev.cursor != "" {
		c.cursor = ev.cursor
	}
	if ev.body != nil {
		c.take(ev.body, got)
	}
	if c.catching && c.hello && c.upTo(c.user) >= c.wantUser && c.upTo("*") >= c.wantBcast {
		c.catching = false
		c.replay = append(c.replay, time.Since(c.since))
	}
}

// setConn makes conn the one stop closes; false (and conn closed) once stopped.
func (c *jitterClient) setConn(conn resumeConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		conn.close()
		return false
	}
	c.conn = conn
	return true
}

func (c *jitterClient) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// stop ends the client: its connection now, and no reconnect after.
func (c *jitterClient) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.conn != nil {
		c.conn.close()
	}
}

// jitterReport prints the kills, reconnects and the replay latency percentiles.
func jitterReport(w io.Writer, o benchOpts, js []*jitterClient, st *jitterStats) {
	var rep []time.Duration
	for _, c := range js {
		rep = append(rep, c.replay...)
	}
	slices.Sort(rep)
	fmt.Fprintf(w, "jitter        a socket killed about every %s: %d kills, %d reconnects, %d failed dials retried\n",
		o.jitter, st.kills.Load(), st.reconnects.Load(), st.dialErrs.Load())
	if len(o.urls) > 1 {
		for k, base := range o.urls {
			fmt.Fprintf(w, "instance %d   %s took %d reconnects (each to the instance after the one it left)\n", k, base, st.reconnectsTo[k].Load())
		}
		if o.transport != "poll" {
			fmt.Fprintf(w, "welcomes      %d reconnects welcomed by another instance than the one left, %d by the same one\n",
				st.moved.Load(), st.stayed.Load())
		}
	}
	fmt.Fprintf(w, "replay        p50 %s  p99 %s  max %s  over %d caught-up reconnects\n",
		pctOf(rep, 0.5).Round(time.Microsecond), pctOf(rep, 0.99).Round(time.Microsecond), pctOf(rep, 1).Round(time.Microsecond), len(rep))
	fmt.Fprintf(w, "              (%s)\n", replayDefinition)
}

// pctOf is the p-th percentile of sorted durations (0 for none).
func pctOf(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// dialJitter opens every client's first connection (without a cursor, as a first
// visit), client i to instance i mod N, one after another, before anything is
// published, with dials (one per instance), which is also how they reconnect.
func dialJitter(o benchOpts, clients []*benchClient, connsOf map[string]int, dials []resumeDial) ([]*jitterClient, error) {
	js := make([]*jitterClient, o.conns)
	for i := range o.conns {
		user := fmt.Sprintf("u%d", i%o.users)
		src := sourceOf(o, i)
		at := i % len(dials)
		conn, err := dials[at](user, src, "")
		if err != nil {
			for _, c := range js[:i] {
				c.stop()
			}
			return nil, fmt.Errorf("bench: connection %d (to %s): %w", i, o.urls[at], err)
		}
		clients[i] = newBenchClient(o, user)
		js[i] = &jitterClient{benchClient: clients[i], src: src, conn: conn, at: at}
		connsOf[user]++
	}
	return js, nil
}
