// Package e2e_test drives the demo page and the browser client in a real headless
// Chromium (Debian's chromium package) against a real server and RabbitMQ.
package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Timeouts of the browser tests.
const (
	// pageWait bounds one wait for the page to show something; a reconnect after a
	// restart takes a few backoff rounds, and CI machines are shared.
	pageWait = 30 * time.Second
	// pollEvery is how often a wait re-reads the page.
	pollEvery = 50 * time.Millisecond
)

// artifacts is where screenshots are kept (gitignored).
const artifacts = "artifacts"

// chromiumPath finds Debian's chromium or fails saying how to install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: apt-get update && apt-get install -y chromium (.ci/run does this)")
	return ""
}

// newBrowser starts one headless Chromium for the test and stops it at the end. Its
// life is tied to the context of its first call, so that call has no timeout.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "pushbridge-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's children can write to the profile for a moment after it stops.
		apptest.Eventually(t, 10*time.Second, "chromium profile removed", func() bool { return os.RemoveAll(profile) == nil })
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1100, 760),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab in browser, closed when the (sub)test ends.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return tab
}

// withoutWebSocket makes every page the tab loads from now on start with no WebSocket,
// as behind a proxy or in a browser that lacks it.
func withoutWebSocket(t *testing.T, tab context.Context) {
	t.Helper()
	_, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: "delete window.WebSocket",
	})
	if err != nil {
		t.Fatalf("remove WebSocket: %v", err)
	}
}

func navigate(t *testing.T, tab context.Context, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
}

// waitFor polls the JavaScript expression in the page until it is true, and fails
// with what the demo page shows if it does not become true within pageWait.
func waitFor(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(pollEvery), chromedp.WithPollingTimeout(pageWait)))
	if err != nil {
		t.Fatalf("waiting for %s: %v\npage: %s", what, err, demoState(t, tab))
	}
}

// demoState is what the demo page shows, for failure messages.
func demoState(t *testing.T, tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		state: document.querySelector("#state")?.textContent,
		transport: document.querySelector("#transport")?.textContent,
		notice: document.querySelector("#notice")?.textContent,
		items: [...document.querySelectorAll("#messages li")].map(li => li.className + " " + li.textContent),
	})`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// openDemo opens url (the demo page) in a new tab of browser and waits until the page
// is open on transport.
func openDemo(t *testing.T, browser context.Context, url, transport string) context.Context {
	t.Helper()
	tab := newTab(t, browser)
	navigate(t, tab, url)
	waitOpen(t, tab, transport)
	return tab
}

// waitOpen waits until the demo page says it is open on transport.
func waitOpen(t *testing.T, tab context.Context, transport string) {
	t.Helper()
	waitFor(t, tab, "open on "+transport, `document.querySelector("#state").textContent === "open" &&
		document.querySelector("#transport").textContent === `+jsString(transport))
}

// shownMessages is the data of each message the demo page lists, oldest first.
func shownMessages(t *testing.T, tab context.Context) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#messages li.message .data")].map(e => e.textContent)`))
	if err != nil {
		t.Fatalf("read the message list: %v", err)
	}
	return got
}

// waitShown waits until the demo page lists n messages.
func waitShown(t *testing.T, tab context.Context, n int) []string {
	t.Helper()
	waitFor(t, tab, "messages listed", `document.querySelectorAll("#messages li.message").length >= `+jsonOf(n))
	return shownMessages(t, tab)
}

// screenshot saves the page as artifacts/name and logs where.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	path, _ := filepath.Abs(filepath.Join(artifacts, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the demo page: %s", path)
}

func jsString(s string) string { return jsonOf(s) }

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
