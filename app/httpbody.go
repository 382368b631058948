package app

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// errBodyOnGet is the answer to a GET or HEAD with a body: no route reads one, and
// net/http would otherwise read up to 256 KiB of it, for as long as the client
// trickles it, before answering.
var errBodyOnGet = []byte(`{"error":"GET and HEAD requests must not have a body"}` + "\n")

// guardBodies bounds the time a client has to send a request's body: bodyTimeout from
// when its headers arrived, the read deadline of the connection until the body has
// all arrived. Past it the handler's read fails (answered 408) or, if the handler
// answered without reading it, net/http's read of the rest fails and the connection
// closes after the answer. Once the body is in, the deadline is lifted, so a request
// that then waits (a publish for the broker's confirm) is not cut by it.
//
// Requests without a body need no deadline after their headers: a GET stream (SSE, a
// long poll) is not reading anything, and net/http notices a client that leaves.
// A GET or HEAD that announces a body is refused with 400 and the connection closed.
func (g *connGate) guardBodies(next http.Handler, bodyTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 { // http.NoBody: no Content-Length, or 0, and not chunked
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// net/http would read the body after the answer, to reach a next request
			// (up to 256 KiB, at the client's pace): no next request, and no reading.
			_ = rc.SetReadDeadline(time.Now())
			h := w.Header()
			h.Set("Connection", "close")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(errBodyOnGet)
			return
		}
		if err := rc.SetReadDeadline(time.Now().Add(bodyTimeout)); err != nil {
			http.Error(w, "request body deadline: "+err.Error(), http.StatusInternalServerError)
			return
		}
		g.awaitBody(r.Context(), true)
		tb := &timedBody{ReadCloser: r.Body, left: r.ContentLength, done: func() {
			_ = rc.SetReadDeadline(time.Time{})
			g.awaitBody(r.Context(), false)
		}}
		// A shallow copy: net/http keeps the original request, whose body it reads
		// itself after the handler (and knows by type, to judge what is left unread).
		r2 := r.WithContext(r.Context())
		r2.Body = tb
		next.ServeHTTP(w, r2)
	})
}

// timedBody calls done once its body has all arrived: the announced length read, or
// EOF. A failed read does not count: after a timeout the deadline must stay, or
// net/http's read of the rest would wait without one.
type timedBody struct {
	io.ReadCloser
	left int64 // bytes still announced; negative: unknown (chunked), until EOF
	done func()
	once sync.Once
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if b.left == 0 || err == io.EOF {
		b.once.Do(b.done)
	}
	return n, err
}
