package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// The shape and timing of a fault run.
const (
	faultKey = "fault" // the routing key of the run's one queue
	// faultClientsPerTransport: 24 clients in all, each ~20 targeted msg/s at 500 msg/s.
	faultClientsPerTransport = 8
	// faultPresenceTTL is BRIDGE_PRESENCE_TTL: short, so a fault "longer than the
	// TTL" is seconds long.
	faultPresenceTTL = 2 * time.Second
	// faultShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT of the instances.
	faultShutdownTimeout = 5 * time.Second
	// faultWarmup and faultAfter are the load before the fault and after it ends,
	// in messages (3 s and 5 s at loadRate).
	faultWarmup = 3 * loadRate
	faultAfter  = 5 * loadRate
	// resumeWithin is "delivery resumes by itself within a few seconds of the fault
	// ending": each client's first own message published after the end arrives by then.
	resumeWithin = 5 * time.Second
	// settleStall ends the wait for the last messages once nothing new arrived at any
	// client for this long: what is missing then is lost, not late.
	settleStall = 6 * time.Second
	// settleMax bounds that wait in any case (a backlog of a long outage, -race).
	settleMax = 90 * time.Second
	// readyPollEvery is how often the rig samples each instance's /readyz.
	readyPollEvery = 200 * time.Millisecond
)

// faultOpts shape one run.
type faultOpts struct {
	instances int  // default 2
	noIDs     bool // the publisher sets no AMQP message-id (the Spring default)
	// resumeWithin bounds, per client, the time from the fault's end to the arrival
	// of its first own message published after it; default resumeWithin.
	resumeWithin time.Duration
	// redis is the Redis to break, single or cluster; default -faults.redis.
	redis string
}

// rig is one fault run: instances as real processes on a private Redis, this test's
// own queue (the instances reach RabbitMQ through a proxy the test can cut), a
// publisher at loadRate and clients on every transport that resume as bridge.js does.
type rig struct {
	redis faultRedis
	tp    *apptest.Topology
	amqp  *apptest.Proxy
	env   map[string]string
	fleet *fleet
	load  *loadPublisher
	opts  faultOpts

	clients []*resumer
	bFrom   map[*resumer]int // the first broadcast each client must get

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	readyMu sync.Mutex
	ready   []readySample
	start   time.Time // of the run, for the readiness log
	faultAt time.Time
	endAt   time.Time
}

type readySample struct {
	at     time.Duration // since the run started
	proc   string
	status int // 0: no answer
}

// newRig starts the instances and the clients, waits until every client has its
// welcome, and starts the load.
func newRig(t *testing.T, o faultOpts) *rig {
	t.Helper()
	if o.instances == 0 {
		o.instances = 2
	}
	if o.resumeWithin == 0 {
		o.resumeWithin = resumeWithin
	}
	r := &rig{redis: newFaultRedis(t, o.redis), tp: apptest.NewTopology(t, faultKey), opts: o, bFrom: map[*resumer]int{}, start: time.Now()}
	var amqpURL string
	r.amqp, amqpURL = apptest.AMQPProxy(t)
	r.env = map[string]string{
		"BRIDGE_DEV": "1", "AMQP_URL": amqpURL, "BRIDGE_API_KEY": apiKey,
		"BRIDGE_PRESENCE_TTL": faultPresenceTTL.String(), "BRIDGE_SHUTDOWN_TIMEOUT": faultShutdownTimeout.String(),
		"BRIDGE_SEND_QUEUE": "8192",
	}
	for _, m := range []map[string]string{r.tp.Env, r.redis.env()} {
		for k, v := range m {
			r.env[k] = v
		}
	}
	r.fleet = &fleet{}
	for _, p := range startCluster(t, o.instances, r.env) {
		r.fleet.add(p)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.stopClients)
	r.wg.Add(1)
	go r.watchReady()

	var users []string
	for i := range faultClientsPerTransport * len(faultTransports) {
		c := newResumer(fmt.Sprintf("f%d", i), faultTransports[i%len(faultTransports)], r.fleet, i%o.instances)
		r.clients = append(r.clients, c)
		users = append(users, c.user)
		r.bFrom[c] = 0
		r.wg.Add(1)
		go func() { defer r.wg.Done(); c.run(r.ctx) }()
	}
	for _, c := range r.clients {
		r.waitWelcome(t, c)
	}
	r.load = startLoad(t, r.tp, faultKey, users, !o.noIDs)
	return r
}

func (r *rig) waitWelcome(t *testing.T, c *resumer) {
	t.Helper()
	select {
	case <-c.welcomed:
	case <-time.After(procStartTimeout):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("client %s (%s): no welcome within %s: %q", c.user, c.transport, procStartTimeout, c.errs)
	}
}

// addClient starts one more client on instance home; the load targets it once it has
// its welcome, and it must get the broadcasts from then on.
func (r *rig) addClient(t *testing.T, user, transport string, home int) *resumer {
	t.Helper()
	c := newResumer(user, transport, r.fleet, home)
	r.clients = append(r.clients, c)
	r.wg.Add(1)
	go func() { defer r.wg.Done(); c.run(r.ctx) }()
	r.waitWelcome(t, c)
	r.bFrom[c] = r.load.broadcasts()
	r.load.addUser(user)
	return c
}

// faultStarts and faultEnds mark the fault for the readiness log and the resume check.
func (r *rig) faultStarts() { r.faultAt = time.Now() }

func (r *rig) faultEnds() {
	r.endAt = time.Now()
	for _, c := range r.clients {
		c.mu.Lock()
		c.tally.mark = r.endAt
		c.mu.Unlock()
	}
}

// hold keeps a fault on for d: the fault's length, not a wait for an event.
func hold(d time.Duration) { time.Sleep(d) }

// finish publishes faultAfter more messages, stops the load, waits until the clients
// have what they will get, and returns each client's counts (logged as a table).
func (r *rig) finish(t *testing.T) []counts {
	t.Helper()
	if r.endAt.IsZero() {
		r.faultEnds()
	}
	r.load.await(t, faultAfter)
	pub := r.load.stop(t)
	r.load.fence(t)
	r.settle(t, pub.n)
	r.stopClients()
	names := make([]string, len(r.clients))
	cs := make([]counts, len(r.clients))
	for i, c := range r.clients {
		names[i] = c.user + "/" + c.transport
		cs[i] = c.snapshot().count(expected{targeted: pub.n[c.user], bFrom: r.bFrom[c], bTo: pub.n[everyone], times: pub.times})
	}
	t.Logf("%d messages published (%d broadcasts), message ids: %v, redis: %s\n%s",
		r.load.count(), pub.n[everyone], !r.opts.noIDs, r.redisKind(), table(names, cs))
	t.Logf("readiness: %s", r.readiness())

	return cs
}

// settle waits until every client has all it should and the fence, or until nothing
// new arrived anywhere for settleStall.
func (r *rig) settle(t *testing.T, published map[string]int) {
	t.Helper()
	deadline := time.Now().Add(settleMax)
	last, lastChange := -1, time.Now()
	for {
		done, total := true, 0
		for _, c := range r.clients {
			tl := c.snapshot()
			total += len(tl.got) + tl.fences
			want := published[c.user] + published[everyone] - r.bFrom[c]
			if len(tl.got) < want || tl.fences == 0 {
				done = false
			}
		}
		if done {
			return
		}
		if total != last {
			last, lastChange = total, time.Now()
		}
		if time.Since(lastChange) > settleStall || time.Now().After(deadline) {
			t.Logf("settle: gave up waiting after %s without progress (or %s in all)", settleStall, settleMax)
			return
		}
		time.Sleep(50 * time.Millisecond) // polling the clients' state
	}
}

func (r *rig) stopClients() {
	r.cancel()
	r.wg.Wait()
}

// watchReady samples every instance's /readyz until the clients stop.
func (r *rig) watchReady() {
	defer r.wg.Done()
	tick := time.NewTicker(readyPollEvery)
	defer tick.Stop()
	hc := &http.Client{Timeout: readyPollEvery * 5}
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range r.fleet.list() {
			status := 0
			if resp, err := hc.Get(p.URL + "/readyz"); err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			r.readyMu.Lock()
			r.ready = append(r.ready, readySample{time.Since(r.start), p.Name, status})
			r.readyMu.Unlock()
		}
	}
}

// readiness tells, per instance, when /readyz changed, relative to the fault.
func (r *rig) readiness() string {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	rel := func(at time.Duration) string {
		switch {
		case !r.endAt.IsZero() && r.start.Add(at).After(r.endAt):
			return fmt.Sprintf("end+%.1fs", r.start.Add(at).Sub(r.endAt).Seconds())
		case !r.faultAt.IsZero() && r.start.Add(at).After(r.faultAt):
			return fmt.Sprintf("fault+%.1fs", r.start.Add(at).Sub(r.faultAt).Seconds())
		}
		return fmt.Sprintf("%.1fs", at.Seconds())
	}
	last := map[string]int{}
	var out []string
	for _, s := range r.ready {
		if prev, ok := last[s.proc]; !ok || prev != s.status {
			out = append(out, fmt.Sprintf("%s %d at %s", s.proc, s.status, rel(s.at)))
		}
		last[s.proc] = s.status
	}
	return strings.Join(out, "; ")
}

// fleet is the instances clients may reach, as a load balancer sees them.
type fleet struct {
	mu    sync.Mutex
	procs []*proc
}

func (f *fleet) add(p *proc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = append(f.procs, p)
}

// remove takes p out of rotation (a balancer's health check noticed it).
func (f *fleet) remove(p *proc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = slices.DeleteFunc(f.procs, func(q *proc) bool { return q == p })
}

func (f *fleet) list() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs)
}

// url is the base URL of the i-th instance in rotation.
func (f *fleet) url(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.procs) == 0 {
		return "http://127.0.0.1:1" // none in rotation: the dial fails and the client backs off
	}
	return f.procs[i%len(f.procs)].URL
}

// instanceID asks p its instance id (the per-start id of its welcome).
func instanceID(t *testing.T, p *proc) string {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{transport.SubprotocolV1}}
	conn, _, err := d.Dial(p.wsURL("/ws?user=probe-"+url.QueryEscape(p.Name)), nil)
	if err != nil {
		t.Fatalf("probe %s: %v", p.Name, err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("probe %s: %v", p.Name, err)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != "welcome" || f.Instance == "" {
		t.Fatalf("probe %s: first frame %s, want a welcome with the instance", p.Name, data)
	}
	return f.Instance
}

// redisKind is the kind of Redis the run breaks: single or cluster.
func (r *rig) redisKind() string {
	if _, ok := r.redis.(*clusterRedis); ok {
		return "cluster"
	}
	return "single"
}
