// Package bench is the load generator behind `pushbridge bench`: it connects clients
// on one transport, publishes at a rate, and reports deliveries/s, latency, loss and
// duplicates.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// benchGrace is how long the bench waits after the last publish for deliveries in
// flight before it counts the missing ones as lost.
const benchGrace = 10 * time.Second

// maxPublishers bounds -publishers: beyond this many requests in flight the bench
// only queues them in its own HTTP client.
const maxPublishers = 64

type benchOpts struct {
	url, amqpURL, exchange, key, apiKey string
	urls                                []string // the instances to load: -url's list, each scheme://host[/path]
	transport                           string
	redisURL                            string // for -redis-stats, and the in-process server
	redisStats                          bool
	conns, users, rate, size, sources   int
	broadcastEvery                      int
	duration                            time.Duration
	settle                              time.Duration
	jitter                              time.Duration
	compare                             bool
	pushbridgeBin, minimalBin           string
	pid                                 int // the server's process, for its RSS (0: unknown)
	publishers                          int
	drain                               int    // -drain: messages queued before the gate opens (0: publish at -rate)
	gate                                string // -gate: where the server reaches RabbitMQ, opened after the drain's messages are queued
}

// benchBody is what the bench publishes: who it is for, a per-user sequence number and
// the publish time, so receivers can count loss, duplicates and latency.
type benchBody struct {
	User string `json:"receiveUserId,omitempty"`
	Seq  int64  `json:"seq"`
	T    int64  `json:"t"`
	Pad  string `json:"pad,omitempty"`
}

// Serve runs the gateway as `pushbridge serve` does (app.Run is one): the bench starts
// one in this process when it is given no -url.
type Serve func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Run is `pushbridge bench`: it connects clients, publishes at a rate, and reports
// deliveries/s, latency percentiles, loss and duplicates.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, serve Serve) error {
	var o benchOpts
	fs := flag.NewFlagSet("pushbridge bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "server to load, e.g. http://127.0.0.1:8080 (empty: start one in this process, -dev); "+
		"or a comma-separated list of instances of one deployment (sharing Redis): client i connects to instance i mod N, "+
		"a -jitter reconnect goes to the next instance in the list (as a load balancer may send it elsewhere), "+
		"and /api/publish requests go round-robin over them; with several, loss and duplicates are counted as a set per stream, "+
		"since instances dispatch in their own order")
	fs.StringVar(&o.amqpURL, "amqp-url", "", "publish through RabbitMQ (empty: through the server's /api/publish)")
	fs.StringVar(&o.exchange, "exchange", "exchange_test", "exchange to publish to with -amqp-url")
	fs.StringVar(&o.key, "routing-key", "contract", "routing key to publish with")
	fs.StringVar(&o.apiKey, "api-key", getenv("BRIDGE_API_KEY"), "API key for /api/publish")
	fs.IntVar(&o.conns, "conns", 100, "connections (dev identities u0..)")
	fs.StringVar(&o.transport, "transport", "ws", "what the connections use: ws (raw mode), sse or poll")
	fs.IntVar(&o.users, "users", 0, "distinct users the connections belong to (0: one per connection)")
	fs.IntVar(&o.rate, "rate", 1000, "messages published per second")
	fs.IntVar(&o.size, "size", 0, "padding bytes added to each body")
	fs.IntVar(&o.broadcastEvery, "broadcast-every", 0, "make every Nth message a broadcast (0: none)")
	fs.IntVar(&o.sources, "sources", 1, "spread connections over this many source addresses 127.0.0.2..")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to publish")
	fs.DurationVar(&o.settle, "settle", 0, "before and after connecting, wait up to this long for the server's next GC (Go forces one every 2 minutes), and report its live heap per connection too (0: don't wait)")
	fs.DurationVar(&o.jitter, "jitter", 0, "kill every client's socket at a random moment about every this long (uniform in [D/2, 3D/2)) while publishing; "+
		"it reconnects with its cursor by bridge.js's rule (last id seen, else its welcome's cursor), over bridge.v1 on ws. "+
		"Reports kills, reconnects and the replay p50/p99; "+replayDefinition+" (0: no kills)")
	fs.IntVar(&o.publishers, "publishers", 1, "publish requests in flight at once (through /api/publish only; not with -jitter). Above 1 messages may arrive out of order, so loss and duplicates are counted as a set per stream, not by order")
	fs.BoolVar(&o.compare, "compare", false, "run the same broadcast workload (-conns raw WebSockets, every message to all, -rate, -duration) against a fresh `pushbridge serve -dev` process and a fresh minimal gorilla server (app/bench/minimal), one after the other, and print deliveries/s, p50/p99, idle RSS per connection and the ratios")
	fs.StringVar(&o.pushbridgeBin, "pushbridge", "", "with -compare: the pushbridge binary to start (empty: this one)")
	fs.StringVar(&o.minimalBin, "minimal", "", "with -compare: the minimal server's binary (empty: go build it from this repository)")
	fs.IntVar(&o.pid, "pid", 0, "the -url server's process id (one -url only): report its RSS per idle connection too, from /proc (-compare knows its servers')")
	fs.StringVar(&o.redisURL, "redis-url", getenv("REDIS_URL"), "the servers' Redis, for -redis-stats (and the in-process server's REDIS_URL)")
	fs.IntVar(&o.drain, "drain", 0, "queue this many messages (targeted, as with -rate) while the server cannot reach RabbitMQ, then let it drain them: "+
		"deliveries/s is what one consumer takes from a full queue, without a publisher on the same machine. Needs -amqp-url and -gate, the server's AMQP_URL naming the -gate address")
	fs.StringVar(&o.gate, "gate", "", "with -drain: host:port to forward to -amqp-url's broker once the messages are queued; nothing listens there before (a server started with its AMQP_URL there connects when it opens)")
	fs.BoolVar(&o.redisStats, "redis-stats", false, "print Redis commands and CPU per message: INFO commandstats and cpu of -redis-url around the run, less an idle interval of -duration measured first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.jitter < 0 {
		return errors.New("bench: -jitter must not be negative")
	}
	if o.url != "" {
		var err error
		if o.urls, err = parseURLs(o.url); err != nil {
			return err
		}
		if len(o.urls) > 1 && o.pid != 0 {
			return errors.New("bench: -pid reads one server's RSS: give it with a single -url, not a list")
		}
		if len(o.urls) > 1 && o.settle > 0 {
			return errors.New("bench: -settle waits for one server's GC: give it with a single -url, not a list")
		}
	}
	if o.publishers < 1 || o.publishers > maxPublishers || (o.publishers > 1 && (o.jitter > 0 || o.amqpURL != "")) {
		return fmt.Errorf("bench: -publishers must be 1..%d, and 1 with -jitter (its catch-up is by order) or -amqp-url", maxPublishers)
	}
	if (o.drain > 0) != (o.gate != "") || o.drain < 0 || (o.drain > 0 && (o.amqpURL == "" || o.jitter > 0 || o.compare)) {
		return errors.New("bench: -drain N and -gate host:port go together, with -amqp-url, without -jitter or -compare")
	}
	if o.redisStats && o.redisURL == "" {
		return errors.New("bench: -redis-stats needs -redis-url or REDIS_URL")
	}
	if o.users <= 0 || o.users > o.conns {
		o.users = o.conns
	}
	if o.conns <= 0 || o.rate <= 0 || o.sources < 1 || o.sources > 249 {
		return errors.New("bench: -conns and -rate must be positive, -sources 1..249")
	}
	if !slices.Contains(benchTransports, o.transport) {
		return errors.New("bench: -transport must be ws, sse or poll")
	}
	if o.compare {
		return runCompare(ctx, o, stdout)
	}
	if o.url == "" {
		s, stop, err := benchServer(ctx, o, getenv, serve)
		if err != nil {
			return err
		}
		defer stop()
		o.urls = []string{s}
	}
	_, err := runBench(ctx, o, stdout)
	return err
}

// parseURLs reads -url: one instance, or a comma-separated list of them, each an
// http(s) URL with a host and nothing after its path (no query, no fragment); a
// trailing slash is dropped, so paths are appended to it as they are to a bare host.
func parseURLs(list string) ([]string, error) {
	var out []string
	for raw := range strings.SplitSeq(list, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			return nil, fmt.Errorf("bench: -url %q: an empty entry in the list", list)
		case err != nil:
			return nil, fmt.Errorf("bench: -url: %w", err)
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("bench: -url %q: want http:// or https://, e.g. http://127.0.0.1:8080", raw)
		case u.Host == "":
			return nil, fmt.Errorf("bench: -url %q: no host", raw)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
			return nil, fmt.Errorf("bench: -url %q: only scheme, host and path are used: leave out user info, query and fragment", raw)
		}
		base := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/")
		if slices.Contains(out, base) {
			return nil, fmt.Errorf("bench: -url: %s is listed twice", base)
		}
		out = append(out, base)
	}
	return out, nil
}

// benchServer starts a dev server in this process and returns its URL.
func benchServer(ctx context.Context, o benchOpts, getenv func(string) string, serve Serve) (string, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	env := map[string]string{"PORT": "0", "BRIDGE_DEV": "1", "AMQP_URL": o.amqpURL, "BRIDGE_EXCHANGE": o.exchange,
		"BRIDGE_SEND_QUEUE": "4096",
		// The bench measures the gateway, not the per-user budget: its poll clients
		// poll as often as their messages come.
		"BRIDGE_USER_RATE": "1000000", "BRIDGE_USER_BURST": "1000000"}
	if o.redisURL != "" {
		env["REDIS_URL"] = o.redisURL
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve(ctx, []string{"pushbridge", "serve"}, func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return getenv(k)
		}, pw, io.Discard)
		pw.Close()
	}()
	buf := make([]byte, 256)
	n, err := pr.Read(buf)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	stop := func() { cancel(); <-done }
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("bench: in-process server did not start: %w", err)
	}
	line := string(buf[:n])
	i := strings.LastIndex(line, ":")
	return "http://127.0.0.1:" + strings.TrimSpace(line[i+1:]), stop, nil
}

// newBenchClient is a client of user, counting by order, or as a set where messages
// may come out of order: several publishes in flight, or several instances.
func newBenchClient(o benchOpts, user string) *benchClient {
	c := &benchClient{user: user, lastSeq: map[string]int64{}}
	if o.publishers > 1 || len(o.urls) > 1 {
		c.seen = map[string]*seenSet{}
	}
	return c
}

type benchClient struct {
	user     string
	lastSeq  map[string]int64 // by sender stream: user or "*" for broadcasts
	received int64
	dups     int64
	lat      []time.Duration
	first    int64 // unix ns of the first and last message received
	last     int64
	seen     map[string]*seenSet // by stream, when messages may come out of order (-publishers); nil: by order
}

func runBench(ctx context.Context, o benchOpts, stdout io.Writer) (*benchResult, error) {
	clients := make([]*benchClient, o.conns)
	conns := make([]benchConn, o.conns)
	connsOf := make(map[string]int)
	before, _ := settledMemory(ctx, o, stdout)
	rssBefore, rssErr := rssOf(o.pid)
	fmt.Fprintf(stdout, "connecting %d %s clients (%d users) to %s ...\n", o.conns, o.transport, o.users, strings.Join(o.urls, ","))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	a := newAcked(o.users)
	var st jitterStats
	var js []*jitterClient
	var got atomic.Int64
	var wg sync.WaitGroup
	if o.jitter > 0 {
		var err error
		dials := make([]resumeDial, len(o.urls))
		for k, base := range o.urls {
			dials[k] = resumeDialer(ctx, o, base)
		}
		st.reconnectsTo = make([]atomic.Int64, len(o.urls))
		if js, err = dialJitter(o, clients, connsOf, dials); err != nil {
			return nil, err
		}
		defer func() {
			for _, c := range js {
				c.stop()
			}
		}()
		// The readers run from here on, as below; kills start with publishing.
		for _, c := range js {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.run(ctx, o, c.conn, dials, a, &st, &got)
			}()
		}
	} else {
		dials := make([]func(string, net.IP) (benchConn, error), len(o.urls))
		for k, base := range o.urls {
			dials[k] = benchDialer(ctx, o, base)
		}
		for i := range o.conns {
			user := fmt.Sprintf("u%d", i%o.users)
			c, err := dials[i%len(dials)](user, sourceOf(o, i))
			if err != nil {
				return nil, fmt.Errorf("bench: connection %d (to %s): %w", i, o.urls[i%len(o.urls)], err)
			}
			conns[i], clients[i] = c, newBenchClient(o, user)
			connsOf[user]++
		}
		// The readers run from here on: they answer the server's pings while the bench
		// waits for its GC (-settle), and no message is published before they do.
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.read(func(body []byte) { clients[i].take(body, &got) })
			}()
		}
	}

	if len(o.urls) > 1 {
		for k, base := range o.urls {
			fmt.Fprintf(stdout, "instance %d   %s holds %d clients at the start\n", k, base, (o.conns-k+len(o.urls)-1)/len(o.urls))
		}
	}
	if after, err := settledMemory(ctx, o, stdout); err == nil && before != nil {
		reportMemory(stdout, o, before, after)
	}
	var rssPerConn float64
	if rssAfter, err := rssOf(o.pid); o.pid > 0 && err == nil && rssErr == nil {
		rssPerConn = (rssAfter - rssBefore) / float64(o.conns)
		fmt.Fprintf(stdout, "server RSS    %.1f MiB idle with %d connections, %.1f KiB per connection (from /proc/%d)\n",
			rssAfter/(1<<20), o.conns, rssPerConn/1024, o.pid)
	}

	var redis *redisRun
	if o.redisStats {
		var err error
		if redis, err = startRedisStats(ctx, o, stdout); err != nil {
			return nil, err
		}
		defer redis.close()
	}

	pub, closePub, err := benchPublisher(o)
	if err != nil {
		return nil, err
	}
	closePub = sync.OnceFunc(closePub)
	defer closePub()
	waitPub := func() error { return nil }
	if o.publishers > 1 {
		pub, waitPub = concurrentPublisher(ctx, pub, o.publishers)
		defer waitPub()
	}
	st.killing.Store(true)
	var expected, sent int64
	seq := map[string]int64{}
	pad := strings.Repeat("x", o.size)
	publish := func() error {
		b := benchBody{T: time.Now().UnixNano(), Pad: pad}
		stream := "*"
		if o.broadcastEvery > 0 && (sent+1)%int64(o.broadcastEvery) == 0 {
			expected += int64(o.conns)
		} else {
			b.User = fmt.Sprintf("u%d", sent%int64(o.users))
			stream = b.User
			expected += int64(connsOf[b.User])
		}
		seq[stream]++
		b.Seq = seq[stream]
		body, _ := json.Marshal(b)
		if err := pub(ctx, body); err != nil {
			return fmt.Errorf("bench: publish: %w", err)
		}
		a[stream].Store(b.Seq)
		sent++
		return nil
	}
	start := time.Now()
	if o.drain > 0 {
		fmt.Fprintf(stdout, "queueing %d messages behind the closed gate %s ...\n", o.drain, o.gate)
		for sent < int64(o.drain) {
			if err := publish(); err != nil {
				return nil, err
			}
		}
	} else {
		fmt.Fprintf(stdout, "publishing %d msg/s for %s ...\n", o.rate, o.duration)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for time.Since(start) < o.duration {
			<-tick.C
			due := int64(time.Since(start).Seconds()*float64(o.rate)) - sent
			for range due {
				if time.Since(start) >= o.duration {
					break // publishes that fell behind are not made up after the end
				}
				if err := publish(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := waitPub(); err != nil {
		return nil, fmt.Errorf("bench: publish: %w", err)
	}
	pubDone := time.Since(start)
	st.killing.Store(false) // what was published must now arrive: no more kills
	if o.drain > 0 {
		closePub() // every message confirmed: all are queued before the gate opens
		closeGate, err := openGate(o.gate, o.amqpURL)
		if err != nil {
			return nil, err
		}
		defer closeGate()
		fmt.Fprintf(stdout, "gate open: draining ...\n")
		awaitDrain(&got, expected)
	} else {
		deadline := time.Now().Add(benchGrace)
		for got.Load() < expected && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
	for _, c := range js {
		c.stop()
	}
	wg.Wait()
	if o.jitter > 0 {
		jitterReport(stdout, o, js, &st)
	}
	var cost *RedisCost
	if redis != nil {
		if cost, err = redis.cost(ctx, sent); err != nil {
			return nil, err
		}
	}
	r, err := benchReport(stdout, o, clients, sent, expected, pubDone, elapsed)
	r.rssPerConn = rssPerConn
	if cost != nil {
		cost.Report(stdout)
	}
	return r, err
}

// take counts one delivered body: loss, duplicates and latency, per sender stream.
func (bc *benchClient) take(data []byte, got *atomic.Int64) {
	now := time.Now().UnixNano()
	var b benchBody
	if json.Unmarshal(data, &b) != nil {
		return
	}
	stream := b.User
	if stream == "" {
		stream = "*"
	}
	if bc.seen != nil {
		set := bc.seen[stream]
		if set == nil {
			set = new(seenSet)
			bc.seen[stream] = set
		}
		if b.Seq < 0 || !set.add(b.Seq) {
			bc.dups++
			return
		}
	} else if b.Seq <= bc.lastSeq[stream] {
		bc.dups++
		return
	}
	bc.lastSeq[stream] = max(bc.lastSeq[stream], b.Seq)
	bc.received++
	bc.lat = append(bc.lat, time.Duration(now-b.T))
	if bc.first == 0 {
		bc.first = now
	}
	bc.last = now
	got.Add(1)
}

// upTo is the highest n such that every message 1..n of stream has been received.
func (bc *benchClient) upTo(stream string) int64 {
	if bc.seen == nil {
		return bc.lastSeq[stream] // by order: one that came out of order was counted lost (and a duplicate)
	}
	if set := bc.seen[stream]; set != nil {
		return set.upTo
	}
	return 0
}

func benchReport(w io.Writer, o benchOpts, clients []*benchClient, sent, expected int64, pubDone, elapsed time.Duration) (*benchResult, error) {
	var received, dups int64
	var lat []time.Duration
	for _, c := range clients {
		received += c.received
		dups += c.dups
		lat = append(lat, c.lat...)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	perSec := float64(received) / elapsed.Seconds()
	fmt.Fprintf(w, "published     %d messages in %s (%.0f msg/s)\n", sent, pubDone.Round(time.Millisecond), float64(sent)/pubDone.Seconds())
	if o.drain > 0 {
		rate, span, err := drainRate(clients)
		if err != nil {
			return nil, err
		}
		perSec = rate
		fmt.Fprintf(w, "drained       in %s from the first delivery to the last (latency below includes the time queued)\n", span.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "deliveries    %d of %d expected, %.0f/s, %.3f %% delivered\n", received, expected, perSec,
		100*float64(received)/float64(max(expected, 1)))
	fmt.Fprintf(w, "lost          %d\nduplicates    %d\n", expected-received, dups)
	fmt.Fprintf(w, "latency       p50 %s  p90 %s  p99 %s  max %s\n", pct(0.5).Round(time.Microsecond),
		pct(0.9).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond))
	r := &benchResult{perSec: perSec, p50: pct(0.5).Seconds(), p99: pct(0.99).Seconds(),
		lost: expected - received, dups: dups}
	if expected != received || dups > 0 {
		return r, fmt.Errorf("bench: %d lost, %d duplicated", expected-received, dups)
	}
	return r, nil
}

// benchPublisher publishes through RabbitMQ (confirms checked at the end) or the API,
// of each instance in turn.
func benchPublisher(o benchOpts) (func(context.Context, []byte) error, func(), error) {
	if o.amqpURL == "" {
		client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		var next atomic.Uint64 // -publishers calls this from several goroutines
		return func(ctx context.Context, body []byte) error {
			base := o.urls[(next.Add(1)-1)%uint64(len(o.urls))]
			req, _ := json.Marshal(map[string]any{"routingKey": o.key, "data": json.RawMessage(body)})
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", strings.NewReader(string(req)))
			if o.apiKey != "" {
				r.Header.Set("Authorization", "Bearer "+o.apiKey)
			}
			resp, err := client.Do(r)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("publish API of %s answered %s", base, resp.Status)
			}
			return nil
		}, func() {}, nil
	}
	conn, err := amqp.Dial(o.amqpURL)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	var pending []*amqp.DeferredConfirmation
	pubFn := func(ctx context.Context, body []byte) error {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, o.exchange, o.key, true, false, amqp.Publishing{Body: body})
		if err == nil {
			pending = append(pending, dc)
		}
		return err
	}
	return pubFn, func() {
		for _, dc := range pending {
			if !dc.Wait() {
				fmt.Fprintln(os.Stderr, "bench: a publish was nacked by the broker")
				break
			}
		}
		conn.Close()
	}, nil
}

// serverMemory reads the Go runtime gauges of the servers' /metrics, summed over
// them, after a GC there cannot be forced: figures are what the servers hold, garbage
// included, so take them with many connections and compare runs rather than trusting
// one.
func serverMemory(bases []string) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, base := range bases {
		m, err := instanceMemory(base)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", base, err)
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// instanceMemory is serverMemory of one instance.
func instanceMemory(base string) (map[string]float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "go_gc_duration_seconds_count"} {
			if v, ok := strings.CutPrefix(line, k+" "); ok {
				var f float64
				if _, err := fmt.Sscanf(v, "%g", &f); err == nil {
					out[k] = f
				}
			}
		}
	}
	return out, nil
}

// reportMemory prints what the server's runtime gauges grew by, per connection.
func reportMemory(w io.Writer, o benchOpts, before, after map[string]float64) {
	per := func(k string) float64 { return (after[k] - before[k]) / float64(o.conns) }
	heapInUse, live, stacks := per("go_memstats_heap_inuse_bytes"), per("go_memstats_heap_alloc_bytes"), per("go_memstats_stack_inuse_bytes")
	from := "its /metrics"
	if len(o.urls) > 1 {
		from = fmt.Sprintf("the /metrics of its %d instances, summed", len(o.urls))
	}
	fmt.Fprintf(w, "server, per idle connection: heap %.0f B, stacks %.0f B, goroutines %.2f (from %s)\n",
		heapInUse, stacks, per("go_goroutines"), from)
	if o.settle > 0 {
		fmt.Fprintf(w, "server, per idle connection after its GC: live heap %.0f B + stacks %.0f B = %.0f B\n",
			live, stacks, live+stacks)
	}
}

// settledMemory is serverMemory, read (with -settle, one server only) just after its next
// garbage collection: the bench cannot force one, but Go runs one at least every two
// minutes, and right after it the allocated heap is what is live. Without -settle, or
// if no GC comes in time, it reads at once.
func settledMemory(ctx context.Context, o benchOpts, stdout io.Writer) (map[string]float64, error) {
	m, err := serverMemory(o.urls)
	if err != nil || o.settle <= 0 {
		return m, err
	}
	fmt.Fprintf(stdout, "waiting up to %s for the server's next GC ...\n", o.settle)
	deadline := time.Now().Add(o.settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond) // polling another process's counter; nothing to wait on
		next, err := serverMemory(o.urls)
		if err != nil {
			return nil, err
		}
		if next["go_gc_duration_seconds_count"] > m["go_gc_duration_seconds_count"] {
			return next, nil
		}
	}
	fmt.Fprintln(stdout, "no GC came in time: the figures include garbage")
	return serverMemory(o.urls)
}
