package handlers

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// handshakeTimeout bounds the WebSocket handshake, so a client that opens a TCP
// connection and stalls does not hold it forever.
const handshakeTimeout = 10 * time.Second

// sendTimeout bounds how long one client frame may take to hand off (broker confirm).
const sendTimeout = 10 * time.Second

// readBufferSize is the read buffer gorilla keeps for each connection. It reads
// nothing once the handshake is done (transport.WS reads the frames), so the least it
// takes: otherwise it would keep net/http's 4 KiB one for the connection's life.
const readBufferSize = 128

// writeBuffers are shared by every connection and held only while writing, so an idle
// connection holds no write buffer.
var writeBuffers sync.Pool

// handleWS serves /ws and, with compat, /ws/yxd/:userId (always raw mode).
func handleWS(dr *door, rule *topicRule, in *inbound, lim Limits, instance string, log *slog.Logger, compat bool) echo.HandlerFunc {
	up := websocket.Upgrader{
		HandshakeTimeout: cmp.Or(lim.HandshakeTimeout, handshakeTimeout),
		Subprotocols:     []string{transport.SubprotocolV1},
		CheckOrigin:      dr.auth.CheckOrigin,
		WriteBufferPool:  &writeBuffers,
		WriteBufferSize:  4096,
		ReadBufferSize:   readBufferSize,
	}
	if compat {
		up.Subprotocols = nil
	}
	return func(c echo.Context) error {
		pathUser := ""
		if compat {
			pathUser = c.Param("userId")
		}
		user, release, err := dr.admit(c.Request(), pathUser)
		if err != nil {
			return err
		}
		// After admission: the rule's refusal names the keys this gateway consumes.
		topics, err := rule.query(c.Request())
		if err == nil {
			err = dr.resuming(user, c.QueryParam("since"))
		}
		if err != nil {
			release()
			return err
		}
		release = both(release, dr.hijacking(c.Request()))
		// context.WithoutCancel: the connection outlives the request's handler.
		ctx := context.WithoutCancel(c.Request().Context())
		ws, sub, detach := openWS(ctx, dr, up, c, user, topics, lim, instance, log)
		if ws == nil {
			release()
			return nil // the client has been answered
		}
		// The reader runs on a goroutine of its own and this handler returns: net/http's
		// goroutine for the connection, whose stack grew deep through the middleware,
		// the upgrade and the replay, ends, and an idle connection keeps one goroutine
		// with a shallow stack (see BENCHMARKS.md, memory per idle connection). After
		// the hijack, net/http neither closes nor reuses the connection.
		go func() {
			defer release()
			defer detach()
			readWS(ctx, dr.hub, in, rule, ws, sub, floodGuard(lim, ws))
		}()
		return nil
	}
}

// openWS upgrades the request, registers the connection (with its subscription) and
// queues its replay. It returns a nil WS when the client was refused (the upgrader or
// openWS answered it).
func openWS(ctx context.Context, dr *door, up websocket.Upgrader, c echo.Context, user string, topics *presence.Topics, lim Limits, instance string, log *slog.Logger) (*transport.WS, *presence.Subscribed, func()) {
	conn, err := up.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil, nil, nil // the upgrader has answered the client
	}
	v1 := conn.Subprotocol() == transport.SubprotocolV1
	ws := transport.NewWS(conn, user, transport.WSOptions{
		V1:            v1,
		Instance:      instance,
		QueueLen:      lim.SendQueue,
		QueueBytes:    lim.SendQueueBytes,
		PingPeriod:    lim.Heartbeat,
		MaxFrameBytes: int64(lim.MaxMessageBytes),
		MaxAge:        lim.MaxAge,
		Stats:         &dr.hub.Stats,
	})
	sub := presence.Subscribe(ws, topics)
	detach, err := dr.attach(ctx, sub, c.QueryParam("since"), 0)
	if err != nil {
		log.Warn("attach", "user", user, "err", err)
		ws.Refuse(statusOf(err).Msg)
		return nil, nil, nil
	}
	return ws, sub, detach
}

// readWS hands the client's messages to the inbound rules until the connection ends;
// every frame they come in (and every ping, pong and continuation) is charged to the
// flood guard first.
func readWS(ctx context.Context, hub *presence.Hub, in *inbound, rule *topicRule, ws *transport.WS, sub *presence.Subscribed, charge func(payload int) bool) {
	ws.Guard(charge)
	_ = ws.Serve(func(typ int, data []byte) {
		if err := onClientFrame(ctx, hub, in, rule, ws, sub, data); err != nil {
			ws.SendError(statusOf(err).Msg)
		}
	})
}

// onClientFrame handles one frame a client sent: in raw mode the whole frame is the
// message; in bridge.v1 mode it is a JSON frame.
func onClientFrame(ctx context.Context, hub *presence.Hub, in *inbound, rule *topicRule, ws *transport.WS, sub *presence.Subscribed, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if !ws.V1() {
		if len(data) == 0 {
			return transport.ErrEmptyMessage
		}
		return in.send(ctx, ws.User(), "", data)
	}
	f, err := transport.DecodeClientFrame(data)
	if err != nil {
		return err
	}
	switch f.Type {
	case transport.FrameSend:
		return in.send(ctx, ws.User(), f.RoutingKey, f.Body)
	case transport.FrameSubscribe:
		t, err := rule.parse(f.Topics)
		if err != nil {
			return err
		}
		sub.Set(t)
		ws.SendSubscribed(t)
	case transport.FrameAck:
		return hub.Ack(ctx, ws.User(), f.IDs)
	}
	return nil
}
