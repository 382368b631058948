package app_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestForeignCursor: a cursor taken from user A, presented by user B on any transport,
// names a place in A's stream, which is not B's: B gets a reset, then its own messages
// from what the window holds and the broadcasts after the cursor's place in them, and
// none of A's.
func TestForeignCursor(t *testing.T) {
	s, tp := rabbitServer(t, nil)
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := "fa"+strconv.Itoa(i), "fb"+strconv.Itoa(i)
			msg := func(user, text string) string { return `{"receiveUserId":"` + user + `","text":"` + text + `"}` }

			ca := tr.open(t, s, a, "")
			publishTo(t, s, tp, "", []byte(msg(a, "a1")))
			body, cursor := ca.next()
			if body != msg(a, "a1") {
				t.Fatalf("A's first message %q, want %q", body, msg(a, "a1"))
			}
			if cursor == "" { // raw WebSocket shows no ids: take the newest one
				cursor = poll(t, s, q("user", a)).Cursor
			}
			ca.close()

			publishTo(t, s, tp, "", []byte(msg(a, "a2")))
			publishTo(t, s, tp, "", []byte(msg(b, "b1")))
			broadcast := `{"text":"to everyone ` + strconv.Itoa(i) + `"}`
			publishTo(t, s, tp, "", []byte(broadcast))
			publishTo(t, s, tp, "", []byte(msg(a, "a3")))

			cb := tr.open(t, s, b, cursor)
			defer cb.close()
			publishTo(t, s, tp, "", []byte(msg(a, "a4")))
			publishTo(t, s, tp, "", []byte(msg(b, "b2")))
			for _, want := range []string{"<reset>", msg(b, "b1"), broadcast, msg(b, "b2")} {
				body, _ := cb.next()
				if strings.Contains(body, `"`+a+`"`) {
					t.Fatalf("B, with A's cursor, read A's message %q", body)
				}
				if body != want {
					t.Fatalf("B, with A's cursor, read %q, want %q", body, want)
				}
			}
			if cb.resumed != nil && cb.resumed() {
				t.Errorf("the welcome said resumed: true for A's cursor; want a reset")
			}
		})
	}
}
