package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The liveness echo of an SSE stream. A frozen client (SIGSTOP, a suspended laptop)
// cannot be found by writing to it: its kernel still ACKs what we send, and a
// heartbeat of a few bytes lands in its receive buffer, so an idle stream's writes never
// block and never fail. Only the client can say it is alive. A stream that opted in
// (?pong=1; bridge.js does) gets each heartbeat as a ping event whose data is a token,
// and its client answers with POST /api/pong {"token":…}. When no answer came within
// pongWait of the ping, the stream ends: the client is gone from the hub and the
// presence map within 1.5 heartbeats of its last answer. A plain EventSource cannot
// answer, so a stream that did not opt in keeps the comment heartbeat and is found
// only when writes to it fail or stall (see SSE.write).
//
// The answer may reach another instance than the one holding the stream (a load
// balancer without affinity): that instance records it in the shared store, and the
// holder, finding no answer of its own when the wait is over, asks the store once.

// MaxPongToken bounds a token a client hands back: a stream id and a beat number.
const MaxPongToken = 64

// pingEvent is the event name of a heartbeat that asks for an answer.
const pingEvent = "ping"

// errNoPong ends a stream whose client did not answer a ping in time.
var errNoPong = errors.New("no answer to the heartbeat: the client is frozen or gone")

// sharedPongWait bounds the shared store's answer when a stream looks for a pong that
// reached another instance: the stream's writes wait meanwhile.
const sharedPongWait = time.Second

// newStreamID names a stream in its ping tokens: random, so a client cannot answer
// for a stream it was never given.
func newStreamID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is the stream's id in its ping tokens; empty when it did not opt in.
func (c *SSE) ID() string { return c.id }

// PongToken splits a token from a ping event into the stream's id and the beat.
func PongToken(token string) (stream string, beat uint64, ok bool) {
	if len(token) > MaxPongToken {
		return "", 0, false
	}
	stream, n, found := strings.Cut(token, ".")
	if !found || stream == "" {
		return "", 0, false
	}
	beat, err := strconv.ParseUint(n, 10, 64)
	return stream, beat, err == nil
}

// Pong takes the client's answer to the ping of beat.
func (c *SSE) Pong(beat uint64) {
	for {
		old := c.ponged.Load()
		if beat <= old || c.ponged.CompareAndSwap(old, beat) {
			return
		}
	}
}

// ping is the heartbeat event of beat, for a stream that opted in.
func (c *SSE) ping(beat uint64) []byte {
	return EncodeEvent(pingEvent, "", []byte(c.id+"."+strconv.FormatUint(beat, 10)))
}

// answered reports whether the ping of beat was answered: here, or through another
// instance (SSEOptions.Answered). A store that fails counts as an answer: a Redis
// outage must not cut every stream.
func (c *SSE) answered(ctx context.Context, beat uint64) bool {
	if c.ponged.Load() >= beat {
		return true
	}
	if c.opts.Answered == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, sharedPongWait)
	defer cancel()
	ok, err := c.opts.Answered(ctx, c.id+"."+strconv.FormatUint(beat, 10))
	return ok || err != nil
}
