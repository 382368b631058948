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

// userRates is the HTTP routes' counterpart of a WebSocket's per-connection token
// bucket (POST /api/send): a request has no connection to hang a bucket on, so the
// buckets are per user, at the same rate, and forgotten once idle long enough to be
// full again.
type userRates struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket unused this long is full, the same as a new one

	mu        sync.Mutex
	buckets   map[string]*userBucket
	nextSweep int
}

type userBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newUserRates(l Limits) *userRates {
	u := &userRates{limit: rate.Inf, burst: 1, buckets: make(map[string]*userBucket), nextSweep: minSweep}
	if l.MessageRate > 0 {
		u.limit, u.burst = rate.Limit(l.MessageRate), max(l.MessageBurst, 1)
		u.idle = time.Duration(float64(u.burst) / float64(u.limit) * float64(time.Second))
	}
	return u
}

// allow takes one message from user's bucket, or answers 429 with the seconds until
// the next one would pass.
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
	return &Error{Status: http.StatusTooManyRequests, Msg: "message rate limit exceeded (BRIDGE_MESSAGE_RATE)",
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
	reasonRate = "message rate limit exceeded"
)

// newFrameLimiter is the token bucket of one connection's inbound messages.
func (l Limits) newFrameLimiter() *rate.Limiter {
	if l.MessageRate <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(l.MessageRate), max(l.MessageBurst, 1))
}

// floodGuard returns the check a WebSocket's reader makes before handling a frame:
// within the rate it says yes; beyond it the connection is closed with 1008.
func floodGuard(l Limits, ws *transport.WS) (allow func() bool) {
	lim := l.newFrameLimiter()
	return func() bool {
		if lim.Allow() {
			return true
		}
		ws.CloseWith(websocket.ClosePolicyViolation, reasonRate)
		return false
	}
}
