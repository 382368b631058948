package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pushbridge/pushbridge/presence"
)

// connRetryAfter is the Retry-After of a connection refused for a full instance or
// user: long enough that a reconnect loop does not hammer us, short enough that a
// client whose other tab just closed is soon back.
const connRetryAfter = 5 * time.Second

// connSlots counts the connections of every transport on this instance, in total and
// per user, so that a limit is enforced before a connection is upgraded or a stream
// starts. Counting here rather than asking the hub makes "check and take" one step,
// so a burst of concurrent handshakes cannot overshoot.
type connSlots struct {
	maxTotal, maxUser int

	mu    sync.Mutex
	total int
	users map[string]int
}

func newConnSlots(maxTotal, maxUser int) *connSlots {
	return &connSlots{maxTotal: maxTotal, maxUser: maxUser, users: make(map[string]int)}
}

// acquire takes a slot for one connection of user, or answers 503 with Retry-After.
// The returned release gives it back; calling it more than once is harmless.
func (s *connSlots) acquire(user string) (release func(), err error) {
	if s == nil { // a Deps not made by NewServer: nothing is counted
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.maxTotal > 0 && s.total >= s.maxTotal:
		return nil, tooManyConns("this instance is at BRIDGE_MAX_CONNS")
	case s.maxUser > 0 && s.users[user] >= s.maxUser:
		return nil, tooManyConns("this user is at BRIDGE_MAX_CONNS_PER_USER on this instance")
	}
	s.total++
	s.users[user]++
	var once sync.Once
	return func() { once.Do(func() { s.release(user) }) }, nil
}

func (s *connSlots) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.users[user]--; s.users[user] <= 0 {
		delete(s.users, user)
	}
}

func tooManyConns(msg string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Msg: "too many connections: " + msg,
		RetryAfter: strconv.Itoa(int(connRetryAfter / time.Second))}
}

// admitConn is the door of every connection route: the origin and the identity
// (Auth.Admit), then a connection slot of the user's, released by the caller when
// the connection ends.
func admitConn(d Deps, r *http.Request, pathUser string) (user string, release func(), err error) {
	if user, err = d.Auth.Admit(r, pathUser); err != nil {
		return "", nil, err
	}
	if release, err = reserveConn(r.Context(), d, user); err != nil {
		return "", nil, err
	}
	return user, release, nil
}

// reserveConn takes a connection slot of user's, here and (by the directory's count)
// across instances; the caller releases it when the connection ends.
func reserveConn(ctx context.Context, d Deps, user string) (release func(), err error) {
	if release, err = d.slots.acquire(user); err != nil {
		return nil, err
	}
	if err = userConnsEverywhere(ctx, d, user); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// userConnsEverywhere holds a user to BRIDGE_MAX_CONNS_PER_USER across instances, by
// the directory's count of the user's connections on every live instance. The slots
// above are exact on this instance; this count is read, not reserved, so connections
// opened at the same moment on several instances may pass it together — a bound on
// abuse, not an exact quota. If the directory cannot answer, the connection's own
// registration fails next and says so.
func userConnsEverywhere(ctx context.Context, d Deps, user string) error {
	if d.Limits.MaxConnsPerUser <= 0 || d.Directory == nil {
		return nil
	}
	es, err := d.Directory.Lookup(ctx, user)
	if err != nil || len(es) < d.Limits.MaxConnsPerUser {
		return nil
	}
	return tooManyConns(fmt.Sprintf("this user holds %d connections across instances (BRIDGE_MAX_CONNS_PER_USER)", len(es)))
}

// attach registers conn on this instance and in the directory and queues its replay
// from cursor (see presence.Hub.Attach). detach undoes both.
func attach(ctx context.Context, d Deps, conn presence.Conn, cursor string, limit int) (detach func(), err error) {
	// A connection that arrives after the hub drained would never be told to go, and an
	// open SSE response or poll would hold up the HTTP server's Shutdown.
	if d.Draining != nil && d.Draining() {
		return nil, errDraining
	}
	if err := d.Hub.Attach(ctx, conn, cursor, limit); err != nil {
		return nil, err
	}
	return func() { d.Hub.Detach(ctx, conn) }, nil
}

var errDraining = &Error{Status: http.StatusServiceUnavailable, Msg: "this instance is shutting down: connect again", RetryAfter: "1"}
