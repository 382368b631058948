package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ackPage, run in a page of the server's origin, loads bridge.js as a page would and
// listens to messages with two slow listeners, each noting when it returned (the
// page's clock, the same machine's as the server's).
const ackPage = `import("/bridge.js").then(({ Bridge }) => {
  window.handled = [];
  const b = new Bridge("", { user: "acker", transport: "ws" });
  const slow = (name) => (m) => {
    const until = Date.now() + 300;
    while (Date.now() < until) {} // the page's work on the message
    window.handled.push({ name, id: m.id, end: Date.now() });
  };
  b.on("message", slow("first"));
  b.on("message", slow("second"));
  b.on("state", (s) => { window.bridgeState = s; });
  window.bridge = b;
  return true;
})`

// bridge.js confirms a message once the page's "message" listeners have returned: in
// real Chromium, a message whose two listeners take 300 ms each gives exactly one
// message.received, made after both returned.
func TestBrowserAcksAfterTheHandlers(t *testing.T) {
	tap := newPresenceTap(t, "message.*")
	env, tp := clusterEnv(t, map[string]string{"BRIDGE_EVENTS_EXCHANGE": tap.Exchange})
	p := startProc(t, "A", env)
	tab := newTab(t, newBrowser(t))
	navigate(t, tab, p.URL+"/bridge.js") // any page of the server's origin
	evalJS(t, tab, ackPage)
	waitFor(t, tab, "bridge open", `window.bridgeState === "open"`)

	pub := newPublisher(t, tp)
	pub.publish(t, "contract", [][]byte{targeted("acker", 1)})
	waitFor(t, tab, "both listeners ran", `window.handled && window.handled.length === 2`)
	var handled []struct {
		Name, ID string
		End      int64
	}
	evalInto(t, tab, `JSON.stringify(window.handled)`, &handled)
	tap.waitEvents(t, "acker", 1, pageWait)
	ev := tap.events("acker")[0]
	var body struct{ Type, ID, At string }
	if err := json.Unmarshal(ev.Body, &body); err != nil {
		t.Fatalf("message.received body %q: %v", ev.Body, err)
	}
	at, err := time.Parse(time.RFC3339Nano, body.At)
	if err != nil {
		t.Fatal(err)
	}
	last := time.UnixMilli(max(handled[0].End, handled[1].End))
	t.Logf("listeners returned at %s, receipt made at %s (%v later)", last.Format("15:04:05.000"), at.Format("15:04:05.000"), at.Sub(last))
	if body.Type != "message.received" || body.ID == "" || handled[0].ID == "" || body.ID != userPos(handled[0].ID) {
		t.Fatalf("event %s for page message %q, want message.received of it", ev.Body, handled[0].ID)
	}
	if at.Before(last) {
		t.Fatalf("receipt made at %s, before the listeners returned at %s", at.Format("15:04:05.000"), last.Format("15:04:05.000"))
	}
	// Exactly one: a marker made after the receipt (one instance: one outbox, in order)
	// comes next.
	pub.publish(t, "contract", [][]byte{targeted("nobody-here", 1)})
	tap.waitEvents(t, "nobody-here", 1, pageWait)
	if n := len(tap.events("acker")); n != 1 {
		t.Fatalf("%d events for the page's user, want one message.received", n)
	}
}

func evalJS(t *testing.T, tab context.Context, js string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("run in the page: %v", err)
	}
}

func evalInto(t *testing.T, tab context.Context, js string, into any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("read from the page: %v", err)
	}
	if err := json.Unmarshal([]byte(s), into); err != nil {
		t.Fatal(fmt.Errorf("page said %q: %w", s, err))
	}
}

// userPos is the user-stream half of a cursor: what a receipt names a message by.
func userPos(cursor string) string { u, _, _ := strings.Cut(cursor, "."); return u }
