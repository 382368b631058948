package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// serverEnv is a dev-mode server's environment on its own RabbitMQ topology.
func serverEnv(t *testing.T) (map[string]string, *apptest.Topology) {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL()}
	for k, v := range tp.Env {
		env[k] = v
	}
	return env, tp
}

func bodyFor(user, text string) string {
	return fmt.Sprintf(`{"receiveUserId":%q,"text":%q}`, user, text)
}

// TestDemoPageInBrowser: the demo page receives what is published to RabbitMQ, and
// sends, over each transport; without WebSocket it falls back to SSE by itself; and a
// page written in the original pattern receives its raw frames.
func TestDemoPageInBrowser(t *testing.T) {
	env, tp := serverEnv(t)
	env["BRIDGE_INBOUND"] = "broadcast" // the demo's chat: what a page sends reaches every page
	env["BRIDGE_INBOUND_KEYS"] = "inbound,chat"
	s := apptest.Start(t, env)
	browser := newBrowser(t)

	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			user := "demo-" + tr
			tab := openDemo(t, browser, s.URL+"/?transport="+tr+"&user="+user, tr)

			body := bodyFor(user, "hello over "+tr)
			tp.Publish(t, "contract", []byte(body), nil)
			if got := waitShown(t, tab, 1); got[0] != body {
				t.Fatalf("page shows %q, want %q", got, body)
			}

			// The send box, in broadcast mode: every page, this one included, receives
			// "<user> : <text>", stamped with the sender's own id.
			typed := "typed on the " + tr + " page"
			ctx, cancel := context.WithTimeout(tab, pageWait)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`
				document.querySelector("#key").value = "chat";
				document.querySelector("#text").value = `+jsString(typed)+`;
				document.querySelector("#sendform").requestSubmit();`)); err != nil {
				t.Fatalf("send from the page: %v", err)
			}
			if got := waitShown(t, tab, 2); got[1] != user+" : "+typed {
				t.Fatalf("page shows %q, want its own message %q back", got, user+" : "+typed)
			}
			screenshot(t, tab, "demo-"+tr+".png")
		})
	}

	t.Run("falls back to SSE without WebSocket", func(t *testing.T) {
		tab := newTab(t, browser)
		withoutWebSocket(t, tab)
		navigate(t, tab, s.URL+"/?user=fallback")
		waitOpen(t, tab, "sse")
		body := bodyFor("fallback", "no WebSocket here")
		tp.Publish(t, "contract", []byte(body), nil)
		if got := waitShown(t, tab, 1); got[0] != body {
			t.Fatalf("page shows %q, want %q", got, body)
		}
	})

	t.Run("topics", func(t *testing.T) {
		// A page with ?topics=contract on each transport: a chat broadcast sent (key
		// "chat") before a contract message reaches an unsubscribed connection of the
		// same user first, but never the page.
		for _, tr := range []string{"ws", "sse", "poll"} {
			user := "topics-" + tr
			tab := openDemo(t, browser, s.URL+"/?transport="+tr+"&topics=contract&user="+user, tr)
			onlyContract(t, s, tp, tab, user, "subscribed to contract")
		}
	})

	t.Run("subscribe at run time", func(t *testing.T) {
		// bridge.subscribe(["contract"]) on an open page: a subscribe frame on WebSocket
		// (the page hears "subscribed"), a reconnect with ?topics= on SSE and poll.
		for _, tr := range []string{"ws", "sse", "poll"} {
			user := "resub-" + tr
			tab := openDemo(t, browser, s.URL+"/?transport="+tr+"&user="+user, tr)
			ctx, cancel := context.WithTimeout(tab, pageWait)
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.subscribed = null;
				bridge.on("subscribed", (ts) => { window.subscribed = ts.join(","); });
				bridge.subscribe(["contract"]);`)); err != nil {
				t.Fatal(err)
			}
			cancel()
			if tr == "ws" {
				waitFor(t, tab, "the subscribed event", `window.subscribed === "contract"`)
			}
			waitOpen(t, tab, tr)
			onlyContract(t, s, tp, tab, user, "subscribed at run time")
		}
	})

	t.Run("original pattern page", func(t *testing.T) {
		originalPattern(t, browser, s, tp)
	})
}

// onlyContract checks that a page of user subscribed to "contract" shows a contract
// message and not a chat broadcast sent before it — which an unsubscribed connection of
// the same user receives first.
func onlyContract(t *testing.T, s *apptest.Server, tp *apptest.Topology, tab context.Context, user, text string) {
	t.Helper()
	watch := apptest.DialWS(t, s.WSURL("/ws?user="+user), "bridge.v1", nil)
	watch.Next(t, pageWait) // welcome
	if err := watch.Conn.WriteMessage(1, []byte(`{"type":"send","routingKey":"chat","data":"left out"}`)); err != nil {
		t.Fatal(err)
	}
	body := bodyFor(user, text)
	tp.Publish(t, "contract", []byte(body), nil)
	for _, want := range []string{"left out", text} {
		if f := watch.Next(t, pageWait); !strings.Contains(string(f.Data), want) {
			t.Fatalf("watcher got %s, want the message with %q", f.Data, want)
		}
	}
	if got := waitShown(t, tab, 1); got[0] != body {
		t.Fatalf("page shows %q first, want only %q", got, body)
	}
}

// originalPattern serves, from another origin, the page of the pattern Pushbridge grew
// out of and checks that it logs the published body as it is.
func originalPattern(t *testing.T, browser context.Context, s *apptest.Server, tp *apptest.Topology) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>waiting</title><script>
var socket = new WebSocket("ws://%s/ws/yxd/1");
socket.onopen = function () { document.title = "open"; };
socket.onmessage = function (e) { console.log(e.data); };
</script>`, s.Addr)
	}))
	t.Cleanup(page.Close)

	tab := newTab(t, browser)
	logged := make(chan string, 16)
	if err := chromedp.Listen(tab, func(ev any) {
		if c, ok := ev.(*runtime.EventConsoleAPICalled); ok && c.Type == runtime.ConsoleAPICalledTypeLog && len(c.Args) > 0 {
			var s string
			if json.Unmarshal([]byte(c.Args[0].Value), &s) == nil {
				select {
				case logged <- s:
				default:
				}
			}
		}
	}); err != nil {
		t.Fatalf("listen to the console: %v", err)
	}
	navigate(t, tab, page.URL)
	waitFor(t, tab, "socket open", `document.title === "open"`)

	body := `{"receiveUserId":"1","routingKey":"contract"}`
	tp.Publish(t, "contract", []byte(body), nil)
	select {
	case got := <-logged:
		if got != body {
			t.Fatalf("console.log(e.data) logged %q, want %q", got, body)
		}
	case <-time.After(pageWait):
		t.Fatal("the original-pattern page logged nothing")
	}
}

// TestDemoPageReconnectsAfterRestart: the server stops and starts again on the same
// port; the page comes back by itself and shows what was published while it was away,
// with nothing twice.
func TestDemoPageReconnectsAfterRestart(t *testing.T) {
	env, tp := serverEnv(t)
	env["BRIDGE_SHUTDOWN_TIMEOUT"] = "2s" // drained clients come back within 1s
	s1 := apptest.Start(t, env)
	browser := newBrowser(t)
	tab := openDemo(t, browser, s1.URL+"/?user=restart", "ws")

	m := func(n int) string { return bodyFor("restart", "message "+strconv.Itoa(n)) }
	tp.Publish(t, "contract", []byte(m(1)), nil)
	waitShown(t, tab, 1)

	s1.Stop(t)
	waitFor(t, tab, "the page to notice", `document.querySelector("#state").textContent !== "open"`)
	tp.Publish(t, "contract", []byte(m(2)), nil) // nobody consumes these until the restart
	tp.Publish(t, "contract", []byte(m(3)), nil)

	_, port, _ := net.SplitHostPort(s1.Addr)
	// The first server's port is free once it stopped, unless another process took it.
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		t.Fatalf("port %s of the first server was taken by another process, so the server cannot restart on it: %v", port, err)
	}
	ln.Close()
	env2 := map[string]string{"PORT": port}
	for k, v := range env {
		env2[k] = v
	}
	s2 := apptest.Start(t, env2)
	if s2.Addr != s1.Addr {
		t.Fatalf("restarted on %s, want %s", s2.Addr, s1.Addr)
	}

	want := []string{m(1), m(2), m(3)}
	waitShown(t, tab, len(want))
	waitOpen(t, tab, "ws")
	tp.Publish(t, "contract", []byte(m(4)), nil)
	want = append(want, m(4))
	if got := waitShown(t, tab, len(want)); !slices.Equal(got, want) {
		t.Fatalf("page shows\n%q\nwant\n%q", got, want)
	}
	screenshot(t, tab, "demo-after-restart.png")
}

// TestDemoPageOutlivesMaxConnectionAge: the server ends the page's WebSocket at
// BRIDGE_MAX_CONNECTION_AGE with a reconnect frame and close 1001; the page comes
// back at once, on WebSocket, resuming, and misses nothing.
func TestDemoPageOutlivesMaxConnectionAge(t *testing.T) {
	env, tp := serverEnv(t)
	env["BRIDGE_MAX_CONNECTION_AGE"] = "2s"
	s := apptest.Start(t, env)
	tab := openDemo(t, newBrowser(t), s.URL+"/?user=aged", "ws")
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		`window.states = []; bridge.on("state", (s) => window.states.push(s));`)); err != nil {
		t.Fatal(err)
	}
	m := func(n int) string { return bodyFor("aged", "message "+strconv.Itoa(n)) }
	tp.Publish(t, "contract", []byte(m(1)), nil)
	waitShown(t, tab, 1)
	waitFor(t, tab, "the connection to end at its age and come back",
		`window.states.includes("reconnecting") && window.states[window.states.length-1] === "open"`)
	waitOpen(t, tab, "ws")
	tp.Publish(t, "contract", []byte(m(2)), nil)
	want := []string{m(1), m(2)}
	if got := waitShown(t, tab, 2); !slices.Equal(got, want) {
		t.Fatalf("page shows\n%q\nwant\n%q", got, want)
	}
}
