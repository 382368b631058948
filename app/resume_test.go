package app_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// reader is one transport's client, reduced to "the next message": its body, and its
// id where the transport shows one.
type reader struct {
	next     func() (body, id string)
	close    func()
	resumed  func() bool // what the welcome said; nil where there is no welcome
	register bool        // holds a connection between messages (poll does not)
}

type clientKind struct {
	name string
	open func(t *testing.T, s *apptest.Server, user, cursor string) *reader
}

var transports = []clientKind{
	{"ws bridge.v1 ?since=", openWSv1},
	{"ws raw ?since=", openWSRaw},
	{"sse Last-Event-ID", func(t *testing.T, s *apptest.Server, user, cursor string) *reader {
		var h http.Header
		if cursor != "" {
			h = http.Header{"Last-Event-Id": {cursor}}
		}
		return openSSE(t, s.URL+"/sse?"+q("user", user).Encode(), h)
	}},
	{"sse ?lastEventId=", func(t *testing.T, s *apptest.Server, user, cursor string) *reader {
		return openSSE(t, s.URL+"/sse?"+q("user", user, "lastEventId", cursor).Encode(), nil)
	}},
	{"poll cursor", openPoll},
}

func openWSv1(t *testing.T, s *apptest.Server, user, cursor string) *reader {
	c := apptest.DialWS(t, s.WSURL("/ws?"+q("user", user, "since", cursor).Encode()), "bridge.v1", nil)
	r := &reader{close: func() { c.Conn.Close() }, register: true}
	var resumed *bool
	r.resumed = func() bool { return resumed != nil && *resumed }
	r.next = func() (string, string) {
		for {
			f := v1Frame(t, c.Next(t, wait).Data)
			switch typ := jsonString(t, f["type"]); typ {
			case "welcome":
				var b bool
				_ = json.Unmarshal(f["resumed"], &b)
				resumed = &b
			case "message":
				return bodyOfData(t, f["data"]), jsonString(t, f["id"])
			default:
				return "<" + typ + ">", ""
			}
		}
	}
	return r
}

func openWSRaw(t *testing.T, s *apptest.Server, user, cursor string) *reader {
	c := apptest.DialWS(t, s.WSURL("/ws?"+q("user", user, "since", cursor).Encode()), "", nil)
	return &reader{
		close:    func() { c.Conn.Close() },
		register: true,
		next: func() (string, string) {
			b := string(c.Next(t, wait).Data)
			if strings.HasPrefix(b, `{"type":"reset"`) { // a raw socket's one frame of ours
				return "<reset>", ""
			}
			return b, ""
		},
	}
}

func openSSE(t *testing.T, url string, h http.Header) *reader {
	c := apptest.OpenSSE(t, url, h)
	r := &reader{close: c.Close, register: true}
	var resumed *bool
	r.resumed = func() bool { return resumed != nil && *resumed }
	r.next = func() (string, string) {
		for {
			ev := c.NextEvent(t, wait)
			switch ev.Event {
			case "welcome":
				var w struct{ Resumed bool }
				_ = json.Unmarshal([]byte(ev.Data), &w)
				resumed = &w.Resumed
			case "":
				return ev.Data, ev.ID
			default:
				return "<" + ev.Event + ">", ""
			}
		}
	}
	return r
}

func openPoll(t *testing.T, s *apptest.Server, user, cursor string) *reader {
	if cursor == "" {
		cursor = poll(t, s, q("user", user)).Cursor
	}
	var buf []pollFrame
	return &reader{
		close: func() {},
		next: func() (string, string) {
			deadline := time.Now().Add(wait)
			for len(buf) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no message polled within %s", wait)
				}
				a := poll(t, s, q("user", user, "cursor", cursor, "wait", "5s"))
				buf, cursor = a.Messages, a.Cursor
				if a.Reset {
					return "<reset>", ""
				}
			}
			f := buf[0]
			buf = buf[1:]
			return bodyOfData(t, f.Data), f.ID
		},
	}
}

// TestResumeAfterDisconnect: a client that comes back with the id of the last message
// it read gets exactly what it missed, then what is new, on every transport.
func TestResumeAfterDisconnect(t *testing.T) {
	s, tp := rabbitServer(t, nil)
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			user := "r" + strconv.Itoa(i)
			msg := func(n int) string { return `{"receiveUserId":"` + user + `","n":` + strconv.Itoa(n) + `}` }
			registered := func(n int) {
				apptest.Eventually(t, wait, "connections: "+strconv.Itoa(n), func() bool { return connCount(t, s) == n })
			}

			c := tr.open(t, s, user, "")
			if c.register {
				registered(1)
			}
			publishTo(t, s, tp, "", []byte(msg(1)))
			body, cursor := c.next()
			if body != msg(1) {
				t.Fatalf("first message %q, want %q", body, msg(1))
			}
			if cursor == "" { // raw WebSocket shows no ids: take the newest one
				cursor = poll(t, s, q("user", user)).Cursor
			}
			c.close()
			registered(0)

			publishTo(t, s, tp, "", []byte(msg(2)))
			publishTo(t, s, tp, "", []byte(msg(3)))
			c = tr.open(t, s, user, cursor)
			if c.register {
				registered(1)
			}
			publishTo(t, s, tp, "", []byte(msg(4)))
			for n := 2; n <= 4; n++ {
				if body, _ := c.next(); body != msg(n) {
					t.Fatalf("after resuming: %q, want %q", body, msg(n))
				}
			}
			if c.resumed != nil && !c.resumed() {
				t.Errorf("the welcome said resumed: false")
			}
		})
	}
}

// TestBadCursorGetsReset: a malformed, unknown or too old cursor gets a reset, then what
// the window still holds — not silence.
func TestBadCursorGetsReset(t *testing.T) {
	s, tp := rabbitServer(t, map[string]string{"BRIDGE_HISTORY_SIZE": "1"})
	start := poll(t, s, q("user", "b")).Cursor
	publishTo(t, s, tp, "", []byte(`{"receiveUserId":"b","n":-1}`)) // pushed out of the window by the next
	publishTo(t, s, tp, "", []byte(`{"receiveUserId":"b","n":0}`))
	head := poll(t, s, q("user", "b")).Cursor
	n, _ := strconv.ParseUint(head, 10, 64)
	cursors := map[string]string{
		"malformed":           "12ab",
		"unknown":             strconv.FormatUint(n+1_000_000, 10),
		"before this history": "1",
		"too old":             start,
	}
	for _, tr := range transports {
		for kind, cursor := range cursors {
			t.Run(tr.name+" "+kind, func(t *testing.T) {
				c := tr.open(t, s, "b", cursor)
				defer c.close()
				if body, _ := c.next(); body != "<reset>" {
					t.Fatalf("got %q, want a reset first", body)
				}
				if body, _ := c.next(); !strings.Contains(body, `"n":0`) {
					t.Fatalf("after the reset: %q, want the message still in the window", body)
				}
				if c.resumed != nil && c.resumed() {
					t.Errorf("the welcome said resumed: true")
				}
			})
		}
	}
}
