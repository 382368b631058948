package handlers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// handleSSE serves GET /sse: a text/event-stream of the user's messages and the
// broadcasts. Each message is one event with its id; its data is the body verbatim, or
// with ?protocol=bridge.v1 the bridge.v1 message frame (what bridge.js uses, so it has
// the routing key). The stream resumes after the Last-Event-ID header (sent by
// EventSource when it reconnects by itself) or ?lastEventId=. With ?pong=1 each
// heartbeat is a ping event the client answers with POST /api/pong, and a client that
// stops answering is cut (see handlers/transport/sse_echo.go).
func handleSSE(dr *door, rule *topicRule, lim Limits, instance string, log *slog.Logger, streams *sseStreams) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		user, release, err := dr.admit(r, "")
		if err != nil {
			return err
		}
		defer func() {
			if release != nil { // the stream did not start
				release()
			}
		}()
		// After admission: the rule's refusal names the keys this gateway consumes.
		topics, err := rule.query(r)
		if err != nil {
			return err
		}
		v1 := false
		switch p := c.QueryParam("protocol"); p {
		case "":
		case transport.SubprotocolV1:
			v1 = true
		default:
			return &Error{Status: http.StatusBadRequest, Msg: "protocol must be " + transport.SubprotocolV1 + " or absent"}
		}
		echoOn := false
		switch p := c.QueryParam("pong"); p {
		case "", "0":
		case "1":
			echoOn = true
		default:
			return &Error{Status: http.StatusBadRequest, Msg: "pong must be 1, 0 or absent"}
		}
		cursor := r.Header.Get("Last-Event-ID")
		if cursor == "" {
			cursor = c.QueryParam("lastEventId")
		}
		if err := dr.resuming(user, cursor); err != nil {
			return err
		}

		w := c.Response()
		conn := transport.NewSSE(w, user, transport.SSEOptions{
			V1:         v1,
			Instance:   instance,
			QueueLen:   lim.SendQueue,
			QueueBytes: lim.SendQueueBytes,
			Heartbeat:  lim.Heartbeat,
			MaxAge:     lim.MaxAge,
			Stats:      &dr.hub.Stats,
			Echo:       echoOn,
			Answered: func(ctx context.Context, token string) (bool, error) {
				return dr.hub.Ponged(ctx, user, token, pongTTL(lim.Heartbeat))
			},
		})
		ctx := context.WithoutCancel(r.Context())
		detach, err := dr.attach(ctx, presence.Subscribe(conn, topics), cursor, 0)
		if err != nil {
			return err
		}
		ended := func() {} // the stream's end, for all that was taken for it
		if echoOn {
			ended = streams.add(conn)
		}
		ended = both(detach, both(ended, release))
		release = nil // ended has it

		h := w.Header()
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // nginx and its kin: pass each event on at once
		h.Del("Content-Length")
		if served, err := serveHijacked(r, dr, conn, user, ended, log); served {
			return err
		}
		defer ended()
		w.WriteHeader(http.StatusOK)
		logEnd(log, user, conn.Serve(r.Context()))
		return nil
	}
}

// serveHijacked takes an HTTP/1.1 stream's connection over (transport.SSE.Hijack) and
// serves it on a goroutine of its own, as a WebSocket is, which calls ended when the
// stream is over. The handler returns at once: net/http's goroutine for the connection,
// whose stack grew deep through the middleware and the replay, ends, and an idle stream
// keeps one goroutine with a shallow stack (BENCHMARKS.md, memory per idle connection).
// It reports false, with nothing done, when the connection stays net/http's (HTTP/2).
func serveHijacked(r *http.Request, dr *door, conn *transport.SSE, user string, ended func(), log *slog.Logger) (served bool, err error) {
	gone := dr.hijacking(r) // the connection stays counted past the hijack
	taken, err := conn.Hijack(r)
	if !taken {
		gone()
		if err != nil { // nothing written: the handler answers
			ended()
			return true, err
		}
		return false, nil
	}
	ended = both(ended, gone)
	if err != nil {
		ended()
		logEnd(log, user, err)
		return true, nil // the response has begun: nothing more can be said
	}
	go func() {
		defer ended()
		logEnd(log, user, conn.ServeConn())
	}()
	return true, nil
}

// logEnd logs why a stream ended, unless the client left or we ended it.
func logEnd(log *slog.Logger, user string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Debug("sse stream ended", "user", user, "err", err)
	}
}
