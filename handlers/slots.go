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

// door is what every connection route lets a client in through and registers its
// connection with: origin and identity, a connection slot here, the user's count
// across instances, and the hub, closed once the instance drains.
type door struct {
	auth     *Auth
	slots    *connSlots
	dir      presence.Directory // counts a user's connections across instances; nil: not counted
	maxUser  int                // BRIDGE_MAX_CONNS_PER_USER; 0: unlimited
	draining func() bool        // nil: never
	hub      *presence.Hub
	hijack   func(r *http.Request) (ended func()) // Deps.Hijacking; nil: nobody is told
	budget   *userRates                           // what a costly request of a user draws from (newUserBudget)
}

func newDoor(d Deps, budget *userRates) *door {
	return &door{
		auth: d.Auth, slots: newConnSlots(d.Limits.MaxConns, d.Limits.MaxConnsPerUser), dir: d.Directory,
		maxUser: d.Limits.MaxConnsPerUser, draining: d.Draining, hub: d.Hub, hijack: d.Hijacking,
		budget: budget,
	}
}

// admit checks the origin and the identity (Auth.Admit), then takes a connection slot
// of the user's, released by the caller when the connection ends.
func (dr *door) admit(r *http.Request, pathUser string) (user string, release func(), err error) {
	if user, err = dr.auth.Admit(r, pathUser); err != nil {
		return "", nil, err
	}
	if release, err = dr.reserve(r.Context(), user); err != nil {
		return "", nil, err
	}
	return user, release, nil
}

// reserve takes a connection slot of user's, here and (by the directory's count)
// across instances; the caller releases it when the connection ends.
func (dr *door) reserve(ctx context.Context, user string) (release func(), err error) {
	if release, err = dr.slots.acquire(user); err != nil {
		return nil, err
	}
	if err = dr.userConnsEverywhere(ctx, user); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// resuming draws one from user's budget when the connection resumes from a cursor:
// its replay reads the history before anything else.
func (dr *door) resuming(user, cursor string) error {
	if cursor == "" {
		return nil
	}
	return dr.budget.allow(user)
}

// hijacking tells Deps.Hijacking that r's connection is taken over (a WebSocket, an
// SSE stream); the returned func says it ended.
func (dr *door) hijacking(r *http.Request) (ended func()) {
	if dr.hijack == nil {
		return func() {}
	}
	return dr.hijack(r)
}

// both returns a func that calls a, then b.
func both(a, b func()) func() { return func() { a(); b() } }

// userConnsEverywhere holds a user to BRIDGE_MAX_CONNS_PER_USER across instances, by
// the directory's count of the user's connections on every live instance. The slots
// above are exact on this instance; this count is read, not reserved, so connections
// opened at the same moment on several instances may pass it together — a bound on
// abuse, not an exact quota. If the directory cannot answer, the connection's own
// registration fails next and says so.
func (dr *door) userConnsEverywhere(ctx context.Context, user string) error {
	if dr.maxUser <= 0 || dr.dir == nil {
		return nil
	}
	es, err := dr.dir.Lookup(ctx, user)
	if err != nil || len(es) < dr.maxUser {
		return nil
	}
	return tooManyConns(fmt.Sprintf("this user holds %d connections across instances (BRIDGE_MAX_CONNS_PER_USER)", len(es)))
}

// open refuses a connection while the instance drains: one that arrived after the
// hub drained would never be told to go, and an open SSE response or poll would hold
// up the HTTP server's Shutdown.
func (dr *door) open() error {
	if dr.draining != nil && dr.draining() {
		return errDraining
	}
	return nil
}

// attach registers conn on this instance and in the directory and queues its replay
// from cursor (see presence.Hub.Attach). detach undoes both.
func (dr *door) attach(ctx context.Context, conn presence.Conn, cursor string, limit int) (detach func(), err error) {
	if err := dr.open(); err != nil {
		return nil, err
	}
	if err := dr.hub.Attach(ctx, conn, cursor, limit); err != nil {
		return nil, err
	}
	return func() { dr.hub.Detach(ctx, conn) }, nil
}

var errDraining = &Error{Status: http.StatusServiceUnavailable, Msg: "this instance is shutting down: connect again", RetryAfter: "1"}
