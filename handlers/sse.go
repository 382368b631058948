package handlers

import (
	"context"
	"errors"
	"log/slog"
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
		defer release()
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
		if echoOn {
			defer streams.add(conn)()
		}
		ctx := context.WithoutCancel(r.Context())
		detach, err := dr.attach(ctx, presence.Subscribe(conn, topics), cursor, 0)
		if err != nil {
			return err
		}
		defer detach()

		h := w.Header()
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // nginx and its kin: pass each event on at once
		h.Del("Content-Length")
		w.WriteHeader(http.StatusOK)
		if err := conn.Serve(r.Context()); err != nil && !errors.Is(err, context.Canceled) {
			log.Debug("sse stream ended", "user", user, "err", err)
		}
		return nil
	}
}
