package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestBenchEachTransport: `pushbridge bench` against an in-process dev server, on each
// transport, counts every delivery once and reports no loss.
func TestBenchEachTransport(t *testing.T) {
	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"pushbridge", "bench", "-transport", tr, "-conns", "20", "-users", "10",
				"-rate", "400", "-duration", "1s", "-broadcast-every", "50"}
			if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
				t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
			}
			m := regexp.MustCompile(`deliveries +(\d+) of (\d+) expected`).FindStringSubmatch(out.String())
			if m == nil || m[1] != m[2] || m[1] == "0" {
				t.Fatalf("deliveries not all counted:\n%s", out.String())
			}
			for _, want := range []string{"lost          0\n", "duplicates    0\n", "connecting 20 " + tr + " clients"} {
				if !bytes.Contains(out.Bytes(), []byte(want)) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestBenchRefusesAnUnknownTransport: a typo is an error, not a silent WebSocket run.
func TestBenchRefusesAnUnknownTransport(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"pushbridge", "bench", "-transport", "carrier-pigeon"}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err == nil ||
		!bytes.Contains([]byte(err.Error()), []byte("-transport must be ws, sse or poll")) {
		t.Fatalf("bench answered %v", err)
	}
}

// TestBenchJitter: with every socket killed at random while publishing, each client
// resumes with its cursor and the bench counts every message once — nothing lost,
// nothing repeated — on each transport. It asserts counts, never timings.
func TestBenchJitter(t *testing.T) {
	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			runJitter(t, []string{"-transport", tr})
		})
	}
}

// TestBenchConcurrentPublishers: with several publishes in flight, messages may arrive
// out of order; the bench still counts each once, and refuses -publishers with -jitter.
func TestBenchConcurrentPublishers(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"pushbridge", "bench", "-conns", "10", "-users", "5", "-rate", "400", "-duration", "1s",
		"-broadcast-every", "2", "-publishers", "4"}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"lost          0\n", "duplicates    0\n", "100.000 % delivered"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	err := app.Run(context.Background(), []string{"pushbridge", "bench", "-publishers", "2", "-jitter", "1s"},
		func(string) string { return "" }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "-publishers") {
		t.Fatalf("-publishers 2 -jitter 1s answered %v, want a refusal", err)
	}
}

// TestBenchJitterOverTwoInstances: -url with two instances sharing Redis (each with its
// in-process queue: what /api/publish hands one is numbered in the shared history and
// relayed to the other). Clients start on both, every killed client reconnects to the
// other instance and resumes there with its cursor, and the bench counts every message
// once — nothing lost, nothing repeated — on each transport. Both servers' own
// counters show resumes with a cursor, so the reconnects did land on both.
func TestBenchJitterOverTwoInstances(t *testing.T) {
	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			rds := apptest.NewRedis(t)
			env := map[string]string{"BRIDGE_DEV": "1", "BRIDGE_SEND_QUEUE": "4096",
				"BRIDGE_USER_RATE": "1000000", "BRIDGE_USER_BURST": "1000000"}
			maps.Copy(env, rds.Env)
			a, b := apptest.Start(t, env), apptest.Start(t, env)
			out := runJitter(t, []string{"-url", a.URL + "," + b.URL, "-transport", tr})
			for _, want := range []string{"instance 0   " + a.URL + " holds 10 clients", "instance 1   " + b.URL + " holds 10 clients"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if tr != "poll" { // poll has no welcome naming its instance
				w := regexp.MustCompile(`welcomes +(\d+) reconnects welcomed by another instance than the one left, (\d+) by the same one`).FindStringSubmatch(out.String())
				if w == nil || w[1] == "0" || w[2] != "0" {
					t.Errorf("reconnects did not all resume on the other instance:\n%s", out.String())
				}
			}
			for _, s := range []*apptest.Server{a, b} {
				r := regexp.MustCompile(regexp.QuoteMeta(s.URL) + ` took (\d+) reconnects`).FindStringSubmatch(out.String())
				if r == nil || r[1] == "0" {
					t.Errorf("no reconnect went to %s:\n%s", s.URL, out.String())
				}
				if n := s.Metric(t, "pushbridge_replays_total"); n == 0 {
					t.Errorf("%s counts no connection that came back with a cursor", s.URL)
				}
			}
		})
	}
}

// TestBenchRefusesABadURLList: each -url entry must be an http(s) URL with a host, and
// -pid, which reads one process, takes one.
func TestBenchRefusesABadURLList(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", "ftp://127.0.0.1:1"}, "want http:// or https://"},
		{[]string{"-url", "127.0.0.1:8080"}, "-url"},
		{[]string{"-url", "http://127.0.0.1:1,,http://127.0.0.1:2"}, "an empty entry"},
		{[]string{"-url", "http://"}, "no host"},
		{[]string{"-url", "http://127.0.0.1:1?x=1"}, "leave out"},
		{[]string{"-url", "http://127.0.0.1:1,http://127.0.0.1:1/"}, "listed twice"},
		{[]string{"-url", "http://127.0.0.1:1,http://127.0.0.1:2", "-pid", "1"}, "-pid"},
	} {
		var out, errOut bytes.Buffer
		err := app.Run(context.Background(), append([]string{"pushbridge", "bench"}, c.args...), func(string) string { return "" }, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q answered %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// runJitter runs the bench with -jitter 300ms over 20 clients of 10 users plus args,
// fails the test unless every message was counted once and sockets were killed and
// resumed, and returns what it printed.
func runJitter(t *testing.T, args []string) *bytes.Buffer {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(append([]string{"pushbridge", "bench"}, args...), "-conns", "20", "-users", "10",
		"-rate", "200", "-duration", "2s", "-broadcast-every", "10", "-jitter", "300ms")
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
	}
	m := regexp.MustCompile(`deliveries +(\d+) of (\d+) expected`).FindStringSubmatch(out.String())
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Fatalf("deliveries not all counted:\n%s", out.String())
	}
	for _, want := range []string{"lost          0\n", "duplicates    0\n", "100.000 % delivered"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	k := regexp.MustCompile(`(\d+) kills, (\d+) reconnects`).FindStringSubmatch(out.String())
	if k == nil || k[1] == "0" || k[2] == "0" {
		t.Fatalf("no socket was killed and resumed, so nothing was tested:\n%s", out.String())
	}
	return &out
}

// TestBenchDrain: -drain queues its messages while the server cannot reach RabbitMQ
// (its AMQP_URL is the closed -gate), then opens the gate: the server drains the full
// queue, every message arrives once, and the rate is reported from the first delivery
// to the last. Every delivery the server acked came through the gate after the
// publish (none could be consumed before).
func TestBenchDrain(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_SEND_QUEUE": "4096"}
	maps.Copy(env, tp.Env)
	declare := apptest.Start(t, env) // declares and binds the queue, then goes
	apptest.Eventually(t, 10*time.Second, "the queue declared", func() bool { return declare.Metric(t, "pushbridge_broker_up") == 1 })
	declare.Stop(t)

	gate := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(10000)) // below the ephemeral range
	env["AMQP_URL"] = "amqp://guest:guest@" + gate + "/"
	s := apptest.Start(t, env)
	var out, errOut bytes.Buffer
	args := []string{"pushbridge", "bench", "-url", s.URL, "-amqp-url", apptest.AMQPURL(), "-exchange", tp.Exchange,
		"-conns", "20", "-users", "10", "-drain", "3000", "-gate", gate}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"queueing 3000 messages behind the closed gate " + gate, "deliveries    6000 of 6000 expected",
		"lost          0\n", "duplicates    0\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`drained +in \S+ from the first delivery to the last`).MatchString(out.String()) {
		t.Errorf("no drain time reported:\n%s", out.String())
	}
	if n := s.Metric(t, "pushbridge_deliveries_acked_total"); n != 3000 {
		t.Errorf("the server behind the gate acked %v deliveries, want all 3000", n)
	}
}

// TestBenchDrainNeedsAGate: -drain without -gate (or -amqp-url) is refused.
func TestBenchDrainNeedsAGate(t *testing.T) {
	for _, args := range [][]string{
		{"-drain", "10"},
		{"-drain", "10", "-gate", "127.0.0.1:1"},
		{"-gate", "127.0.0.1:1", "-amqp-url", "amqp://x/"},
	} {
		var out, errOut bytes.Buffer
		err := app.Run(context.Background(), append([]string{"pushbridge", "bench"}, args...), func(string) string { return "" }, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "-drain N and -gate host:port go together") {
			t.Errorf("%v answered %v, want a refusal", args, err)
		}
	}
}
