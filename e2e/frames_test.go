package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// framesPage records, for each frame its socket receives, its type, length and a
// checksum of its bytes; and the close, should the browser fail the connection.
const framesPage = `<!doctype html><title>waiting</title><script>
var got = [];
var ws = new WebSocket("ws://" + location.host + "/ws");
ws.binaryType = "arraybuffer";
ws.onopen = function () { document.title = "open"; };
ws.onmessage = function (e) {
  var b = typeof e.data === "string" ? new TextEncoder().encode(e.data) : new Uint8Array(e.data);
  var sum = 0;
  for (var i = 0; i < b.length; i++) sum = (sum * 31 + b[i]) >>> 0;
  got.push((typeof e.data === "string" ? "text" : "binary") + " " + b.length + " " + sum);
};
ws.onclose = function (e) { got.push("closed " + e.code); };
</script>`

// frameSummary is what framesPage records for a frame.
func frameSummary(binary bool, b []byte) string {
	var sum uint32
	for _, c := range b {
		sum = sum*31 + uint32(c)
	}
	typ := "text"
	if binary {
		typ = "binary"
	}
	return fmt.Sprintf("%s %d %d", typ, len(b), sum)
}

// TestBrowserParsesWSFrames: Chromium, stricter than gorilla's client (it fails the
// connection on a length not in its shortest encoding), reads the frames of the
// vectored writer whole, text and binary, at each side of the length encodings.
func TestBrowserParsesWSFrames(t *testing.T) {
	conns := make(chan *transport.WS, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, framesPage)
			return
		}
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws := transport.NewWS(conn, "b", transport.WSOptions{})
		conns <- ws
		_ = ws.Serve(func(int, []byte) {})
	}))
	t.Cleanup(srv.Close)

	tab := newTab(t, newBrowser(t))
	navigate(t, tab, srv.URL)
	waitFor(t, tab, "socket open", `document.title === "open"`)
	ws := <-conns

	var want []string
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 60 << 10} {
		text := []byte(strings.Repeat("abcdefgh", n/8+1)[:n])
		ws.Send([]presence.Delivery{{M: &presence.Message{UserID: "b", Body: text}, At: presence.Cursor{}}})
		want = append(want, frameSummary(false, text))
		if n > 0 {
			bin := append(bytes.Repeat([]byte{0xfe, 0x01}, n/2+1)[:n-1], 0xff) // not UTF-8: a binary frame
			ws.Send([]presence.Delivery{{M: &presence.Message{UserID: "b", Body: bin}, At: presence.Cursor{}}})
			want = append(want, frameSummary(true, bin))
		}
	}
	waitFor(t, tab, "every frame received, or the socket closed",
		fmt.Sprintf(`got.length >= %d || got.some(g => g.startsWith("closed"))`, len(want)))
	ctx, cancel := context.WithTimeout(tab, pageWait)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`got`))
	if err != nil {
		t.Fatalf("read what the page received: %v", err)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the page received\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
