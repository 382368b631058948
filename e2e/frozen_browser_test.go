package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestDemoPageAnswersSSEPings: bridge.js opens its SSE stream with ?pong=1 and
// answers every ping event, so with a heartbeat of 1 s the stream stays open for many
// of them. A frozen page (CDP Page.setWebLifecycleState "frozen", what a browser does
// to a background tab: its JavaScript stops while the browser still reads the stream)
// answers none, and the server ends the stream within 1.5 heartbeats; thawed, the
// page comes back on SSE by itself.
func TestDemoPageAnswersSSEPings(t *testing.T) {
	const heartbeat = time.Second
	env, _ := serverEnv(t)
	env["BRIDGE_HEARTBEAT"] = heartbeat.String()
	s := apptest.Start(t, env)
	tab := openDemo(t, newBrowser(t), s.URL+"/?transport=sse&user=pinged", "sse")
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		`window.states = []; bridge.on("state", (s) => window.states.push(s));`)); err != nil {
		t.Fatal(err)
	}

	for until := time.Now().Add(4 * heartbeat); time.Now().Before(until); {
		if n := connections(t, s); n != 1 {
			t.Fatalf("%v connections while the page answers its pings, want 1", n)
		}
		time.Sleep(100 * time.Millisecond) // sampling the state, not waiting for an event
	}
	states, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.states`))
	if err != nil || len(states) != 0 {
		t.Fatalf("the page changed state while answering its pings: %q (%v), want it open throughout", states, err)
	}

	if _, err := chromedp.Call(ctx, page.SetWebLifecycleState, page.SetWebLifecycleStateParams{State: page.SetWebLifecycleStateStateFrozen}); err != nil {
		t.Fatalf("freeze the page: %v", err)
	}
	frozen := time.Now()
	apptest.Eventually(t, 10*heartbeat, "the frozen page's stream ended", func() bool { return connections(t, s) == 0 })
	took := time.Since(frozen)
	t.Logf("frozen page's SSE stream gone %s after the freeze (heartbeat %s)", took.Round(time.Millisecond), heartbeat)
	if limit := 3*heartbeat/2 + 500*time.Millisecond; took > limit {
		t.Errorf("stream ended %s after the freeze, want within 1.5 heartbeats plus slack, %s", took, limit)
	}

	if _, err := chromedp.Call(ctx, page.SetWebLifecycleState, page.SetWebLifecycleStateParams{State: page.SetWebLifecycleStateStateActive}); err != nil {
		t.Fatalf("thaw the page: %v", err)
	}
	waitOpen(t, tab, "sse")
	apptest.Eventually(t, 10*heartbeat, "the thawed page connected again", func() bool { return connections(t, s) == 1 })
}

// connections reads pushbridge_connections from s's /metrics.
func connections(t *testing.T, s *apptest.Server) float64 {
	t.Helper()
	resp, err := apptest.Get(s.URL+"/metrics", "")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(resp.Body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pushbridge_connections "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("pushbridge_connections not in /metrics")
	return 0
}
