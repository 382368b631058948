package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// requestFuzzSecret keys the fuzzed production server: the fuzzer cannot sign with it.
const requestFuzzSecret = "request-fuzz-secret-0123456789"

// fuzzServer is a route table over an in-memory hub, in production mode (HS256
// tokens) or dev mode, with every client message broadcast.
func fuzzServer(t testing.TB, dev bool) (http.Handler, *presence.Hub) {
	hub, disp := apptest.LocalHub(t, "fuzz", 100)
	auth := &handlers.Auth{Dev: dev, APIKey: "fuzz-api-key-0123456789abcdef"}
	if !dev {
		auth.Key, auth.Methods = []byte(requestFuzzSecret), []string{"HS256"}
	}
	srv := handlers.NewServer(handlers.Deps{
		Instance: "fuzz", Hub: hub, Dispatcher: disp, Inbound: "broadcast", InboundKeys: []string{"*"},
		Auth: auth, Ready: func() error { return nil }, Metrics: http.NotFoundHandler(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: handlers.Limits{MaxMessageBytes: 1 << 12, SendQueue: 16, Heartbeat: time.Second, MaxQueryBytes: 4096,
			MessageRate: 1000, MessageBurst: 1000, UserRate: 1000, UserBurst: 1000},
	})
	return srv, hub
}

// fuzzRequest builds a request from the fuzzed parts; nil when the parts make no URL.
func fuzzRequest(method, path, query string, h http.Header, body []byte) *http.Request {
	u, err := url.Parse("http://bridge.example")
	if err != nil {
		return nil
	}
	u.Path, u.RawQuery = path, query
	req, err := http.NewRequestWithContext(context.Background(), method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil
	}
	for k, vs := range h {
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	return req
}

// FuzzRequest: the whole request path — routing, then each route's reading of headers
// (Authorization, Cookie, Origin, X-Forwarded-Proto, Last-Event-ID, Content-Type),
// cursors (?cursor=, ?since=, ?lastEventId=), tokens (header, ?token=, cookie) and
// topics — takes any request without a panic or a 5xx. On the production server
// nothing the fuzzer makes gets in: no connection is ever registered and no message
// sent. On the dev server a poll (made to answer at once) is a 4xx, or a 200 whose body
// is the poll answer with a cursor.
func FuzzRequest(f *testing.F) {
	prod, prodHub := fuzzServer(f, false)
	dev, devHub := fuzzServer(f, true)
	head := func() string { // the newest id in the production server's history
		rp, err := prodHub.Replay(context.Background(), "anyone", "", 1, 0)
		if err != nil {
			f.Fatal(err)
		}
		return rp.Head.String()
	}
	head0 := head()
	f.Fuzz(func(t *testing.T, method, path, query, authz, cookie, origin, proto, lastEventID, contentType string, body []byte) {
		h := http.Header{"Authorization": {authz}, "Cookie": {cookie}, "Origin": {origin},
			"X-Forwarded-Proto": {proto}, "Last-Event-ID": {lastEventID}, "Content-Type": {contentType}}

		if req := fuzzRequest(method, path, query, h, body); req != nil {
			rec := httptest.NewRecorder()
			prod.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s?%s: %d %s", method, path, query, rec.Code, rec.Body)
			}
			if n := prodHub.Count(); n != 0 {
				t.Fatalf("%s %s?%s let in a connection without a valid token (%d held)", method, path, query, n)
			}
			if h := head(); h != head0 {
				t.Fatalf("%s %s?%s sent a message without a valid token (history head %q, was %q)", method, path, query, h, head0)
			}
		}

		// A poll on the dev server, answering at once.
		q, _ := url.ParseQuery(query)
		q.Set("wait", "0")
		if q.Get("user") == "" {
			q.Set("user", "fuzz")
		}
		req := fuzzRequest(http.MethodGet, "/poll", q.Encode(), h, nil)
		if req == nil {
			return
		}
		rec := httptest.NewRecorder()
		dev.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("dev poll ?%s: %d %s", q.Encode(), rec.Code, rec.Body)
		case rec.Code == http.StatusOK:
			var a struct {
				Messages []json.RawMessage `json:"messages"`
				Cursor   *string           `json:"cursor"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.Cursor == nil {
				t.Fatalf("dev poll ?%s: 200 with %q, want a poll answer with a cursor (%v)", q.Encode(), rec.Body, err)
			}
		}
		if n := devHub.Count(); n != 0 {
			t.Fatalf("dev poll ?%s left %d connections registered", q.Encode(), n)
		}
	})
}
