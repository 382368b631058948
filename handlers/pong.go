package handlers

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// pongRequest is the body of POST /api/pong: the token of an SSE ping event.
type pongRequest struct {
	Token string `json:"token"`
}

// maxPongBodyBytes bounds a pong request: one token, with room for the JSON around it.
const maxPongBodyBytes = 1 << 10

// sseStreams are this instance's SSE streams that answer their heartbeats, by id, so
// an answer that reaches the instance holding its stream is taken without Redis.
type sseStreams struct{ m sync.Map } // id -> *transport.SSE

func (s *sseStreams) add(c *transport.SSE) (remove func()) {
	s.m.Store(c.ID(), c)
	return func() { s.m.Delete(c.ID()) }
}

func (s *sseStreams) get(id string) *transport.SSE {
	if c, ok := s.m.Load(id); ok {
		return c.(*transport.SSE)
	}
	return nil
}

// pongTTL is how long an answer that reached another instance is kept for the stream's
// holder: it asks half a heartbeat after its ping, and a heartbeat more covers clocks,
// queues and the request's own way.
func pongTTL(heartbeat time.Duration) time.Duration { return 2 * heartbeat }

// handlePong serves POST /api/pong: an SSE client's answer to a ping event (see
// handlers/transport/sse_echo.go). The stream's own instance takes it at once; any
// other records it in the shared store for the holder to find. Same admission and rate
// as /api/ack; a client answers only its own user's streams.
func handlePong(auth *Auth, rates *userRates, hub *presence.Hub, streams *sseStreams, heartbeat time.Duration) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req pongRequest
		user, err := admitClientPost(c.Request(), auth, rates, maxPongBodyBytes, &req)
		if err != nil {
			return err
		}
		id, beat, ok := transport.PongToken(req.Token)
		if !ok {
			return &Error{Status: http.StatusBadRequest, Msg: "token must be the data of a ping event"}
		}
		if s := streams.get(id); s != nil && s.User() == user {
			s.Pong(beat)
			return c.NoContent(http.StatusNoContent)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), sendTimeout)
		defer cancel()
		if err := hub.Pong(ctx, user, req.Token, pongTTL(heartbeat)); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}
