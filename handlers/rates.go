package handlers

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/pushbridge/pushbridge/handlers/transport"
)

// minSweep is the bucket count below which idle buckets are not swept: sweeping a
// small map often saves nothing.
const minSweep = 1024

// userRates are token buckets per user, forgotten once idle long enough to be full
// again. Two kinds: the HTTP routes' counterpart of a WebSocket's per-connection
// message bucket (POST /api/send: a request has no connection to hang a bucket on),
// and the user's budget of costly requests (newUserBudget).
type userRates struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket unused this long is full, the same as a new one
	what  string        // the 429's message: which limit, named by its setting

	mu        sync.Mutex
	buckets   map[string]*userBucket
	nextSweep int
}

type userBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newUserRates(l Limits) *userRates {
	return newUserBuckets(l.MessageRate, l.MessageBurst, "message rate limit exceeded (BRIDGE_MESSAGE_RATE)")
}

// newUserBudget is the budget every costly request of a user draws one from, on this
// instance: a poll with a cursor (it reads the history, up to a page, before anything
// else), a WebSocket or SSE connection that resumes from a cursor (the same read), and
// a send (a broker publish, or a dispatch to everyone). Without it one user polling
// ?cursor=0 in a loop turns a 300-byte request into a page of history read from the
// shared Redis, hundreds of times a second, and every instance's delivery stalls.
func newUserBudget(l Limits) *userRates {
	return newUserBuckets(l.UserRate, l.UserBurst, "request budget exceeded (BRIDGE_USER_RATE)")
}

func newUserBuckets(perSecond, burst int, what string) *userRates {
	u := &userRates{limit: rate.Inf, burst: 1, what: what, buckets: make(map[string]*userBucket), nextSweep: minSweep}
	if perSecond > 0 {
		u.limit, u.burst = rate.Limit(perSecond), max(burst, 1)
		u.idle = time.Duration(float64(u.burst) / float64(u.limit) * float64(time.Second))
	}
	return u
}

// allow takes one from user's bucket, or answers 429 with the seconds until the next
// one would pass.
func (u *userRates) allow(user string) error {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.buckets[user]
	if b == nil {
		if len(u.buckets) >= u.nextSweep {
			u.sweepLocked(now)
		}
		b = &userBucket{lim: rate.NewLimiter(u.limit, u.burst)}
		u.buckets[user] = b
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return nil
	}
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return &Error{Status: http.StatusTooManyRequests, Msg: u.what,
		RetryAfter: strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))}
}

// sweepLocked forgets idle buckets; it runs when the map has doubled since the last
// sweep, so its cost is spread over the insertions. u.mu must be held.
func (u *userRates) sweepLocked(now time.Time) {
	for user, b := range u.buckets {
		if now.Sub(b.seen) > u.idle {
			delete(u.buckets, user)
		}
	}
	u.nextSweep = max(minSweep, 2*len(u.buckets))
}

// Reasons sent in close frames; each stays under the 123 bytes a close frame allows.
const (
	reasonRate  = "message rate limit exceeded"
	reasonBytes = "byte rate limit exceeded"
)

// newFrameLimiter is the token bucket of one connection's inbound frames.
func (l Limits) newFrameLimiter() *rate.Limiter {
	if l.MessageRate <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(l.MessageRate), max(l.MessageBurst, 1))
}

// newByteLimiter is the token bucket of one connection's inbound payload bytes. Its
// burst is two whole messages of the largest size, so a message that may be sent at
// all always can be, after a pause.
func (l Limits) newByteLimiter() *rate.Limiter {
	if l.ByteRate <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(l.ByteRate), max(2*l.MaxMessageBytes, l.ByteRate, 1))
}

// floodGuard is what a WebSocket's reader charges every frame to (transport.WS.Guard):
// one frame of the frame bucket and its payload of the byte bucket. Beyond either, the
// connection is closed with 1008.
func floodGuard(l Limits, ws *transport.WS) (charge func(payload int) bool) {
	frames, bytes := l.newFrameLimiter(), l.newByteLimiter()
	return func(payload int) bool {
		now := time.Now()
		switch {
		case !frames.AllowN(now, 1):
			ws.CloseWith(websocket.ClosePolicyViolation, reasonRate)
			return false
		case payload > 0 && !bytes.AllowN(now, payload):
			ws.CloseWith(websocket.ClosePolicyViolation, reasonBytes)
			return false
		}
		return true
	}
}
