package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// The shape of TestPollHammerGets429.
const (
	hammerWindow  = 500 // broadcasts in the history, 256 bytes each: a full page for ?cursor=0
	hammerWorkers = 8   // goroutines polling ?cursor=0 back to back
	hammerSamples = 100 // messages to the other user in each phase
	budgetRate    = 10  // BRIDGE_USER_RATE (the default)
	budgetBurst   = 40  // BRIDGE_USER_BURST (the default)
)

// TestPollHammerGets429: one user polling /poll?cursor=0 back to back from several
// goroutines — each poll a page of history read from the shared Redis — against the
// real binary (Redis and RabbitMQ) is answered 429 once its BRIDGE_USER_BURST is spent
// and polls at BRIDGE_USER_RATE after that, while another user keeps receiving. The
// other user's delivery latency (publish to RabbitMQ until the frame arrives) is
// measured idle and during the hammering and reported for BENCHMARKS.md, not asserted.
func TestPollHammerGets429(t *testing.T) {
	env, tp := clusterEnv(t, map[string]string{
		"BRIDGE_USER_RATE": strconv.Itoa(budgetRate), "BRIDGE_USER_BURST": strconv.Itoa(budgetBurst),
	})
	p := startProc(t, "hammered", env)
	victim := apptest.DialWS(t, p.wsURL("/ws/yxd/victim"), "", nil)
	pad := strings.Repeat("x", 256)
	var window [][]byte
	for i := range hammerWindow {
		window = append(window, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, pad))
	}
	tp.PublishMany(t, "contract", window, nil) // broadcasts: the victim gets them too
	for range hammerWindow {
		victim.Next(t, 30*time.Second)
	}

	idle := deliveryLatency(t, tp, victim, "idle")
	stop := make(chan struct{})
	var codes sync.Map // status -> *atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range hammerWorkers {
		wg.Go(func() { hammerPolls(t, p.URL, stop, &codes) })
	}
	busy := deliveryLatency(t, tp, victim, "hammered")
	close(stop)
	wg.Wait()
	took := time.Since(start)

	count := func(status int) int64 {
		if v, ok := codes.Load(status); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	ok, refused := count(http.StatusOK), count(http.StatusTooManyRequests)
	t.Logf("hammer: %d polls answered, %d refused with 429 in %s (budget: %d at once, then %d/s)", ok, refused, took.Round(time.Millisecond), budgetBurst, budgetRate)
	t.Logf("victim's delivery latency, idle:     %s", idle)
	t.Logf("victim's delivery latency, hammered: %s", busy)
	if refused == 0 {
		t.Errorf("no poll was refused with 429")
	}
	// What the budget lets through, with a second of slack for the clocks.
	if most := int64(budgetBurst + budgetRate*(int(took.Seconds())+1)); ok > most {
		t.Errorf("%d polls answered in %s, want at most %d (the budget)", ok, took.Round(time.Millisecond), most)
	}
	codes.Range(func(k, v any) bool {
		if st := k.(int); st != http.StatusOK && st != http.StatusTooManyRequests {
			t.Errorf("%d polls answered %d, want only 200 or 429", v.(*atomic.Int64).Load(), st)
		}
		return true
	})
}

// hammerPolls polls ?cursor=0 as user "hammer" until stop, counting the answers.
func hammerPolls(t *testing.T, url string, stop <-chan struct{}, codes *sync.Map) {
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := client.Get(url + "/poll?user=hammer&cursor=0&wait=0")
		if err != nil {
			t.Errorf("hammer poll: %v", err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		n, _ := codes.LoadOrStore(resp.StatusCode, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
}

// latencies summarises delivery latencies.
type latencies []time.Duration

func (l latencies) String() string {
	s := slices.Clone(l)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, max %s (%d messages)", q(0.5), q(0.9), s[len(s)-1].Round(10*time.Microsecond), len(s))
}

// deliveryLatency publishes hammerSamples messages to the victim one after another,
// each once the last arrived, and returns how long each took from publish to frame.
func deliveryLatency(t *testing.T, tp *apptest.Topology, victim *apptest.WSClient, phase string) latencies {
	t.Helper()
	var out latencies
	for i := range hammerSamples {
		body := fmt.Appendf(nil, `{"receiveUserId":"victim","phase":%q,"i":%d}`, phase, i)
		start := time.Now()
		tp.Publish(t, "contract", body, nil)
		if f := victim.Next(t, 30*time.Second); string(f.Data) != string(body) {
			t.Fatalf("victim got %q, want %q", f.Data, body)
		}
		out = append(out, time.Since(start))
	}
	return out
}
