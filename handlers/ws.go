package handlers

import (
	"cmp"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/presence"
)

// SubprotocolV1 selects JSON frames; without it a socket is in raw mode.
const SubprotocolV1 = "bridge.v1"

// handshakeTimeout bounds the WebSocket handshake, so a client that opens a TCP
// connection and stalls does not hold it forever.
const handshakeTimeout = 10 * time.Second

// sendTimeout bounds how long one client frame may take to hand off (broker confirm).
const sendTimeout = 10 * time.Second

// readBufferSize is each connection's read buffer: enough for a frame header and a
// control frame (125 bytes) in one read.
const readBufferSize = 512

// writeBuffers are shared by every connection and held only while writing, so an idle
// connection holds no write buffer.
var writeBuffers sync.Pool

type welcomeFrame struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Instance string `json:"instance"`
	Resumed  bool   `json:"resumed"`
	Cursor   string `json:"cursor,omitempty"` // the newest id when the connection registered
}

type errorFrame struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

// handleWS serves /ws and, with compat, /ws/yxd/:userId (always raw mode).
func handleWS(d Deps, in *inbound, compat bool) echo.HandlerFunc {
	up := websocket.Upgrader{
		HandshakeTimeout: cmp.Or(d.Limits.HandshakeTimeout, handshakeTimeout),
		Subprotocols:     []string{SubprotocolV1},
		CheckOrigin:      d.Auth.CheckOrigin,
		WriteBufferPool:  &writeBuffers,
		WriteBufferSize:  4096,
		// Clients send little, so a small read buffer: gorilla would otherwise keep
		// net/http's 4 KiB one for the connection's life. A larger frame is read
		// through it in several reads.
		ReadBufferSize: readBufferSize,
	}
	if compat {
		up.Subprotocols = nil
	}
	return func(c echo.Context) error {
		pathUser := ""
		if compat {
			pathUser = c.Param("userId")
		}
		topics, err := d.topics.query(c.Request())
		if err != nil {
			return err
		}
		user, release, err := admitConn(d, c.Request(), pathUser)
		if err != nil {
			return err
		}
		release = both(release, d.hijacking(c.Request()))
		// context.WithoutCancel: the connection outlives the request's handler.
		ctx := context.WithoutCancel(c.Request().Context())
		ws, sub, detach := openWS(ctx, d, up, c, user, topics)
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
			readWS(ctx, in, d.topics, ws, sub, floodGuard(d.Limits, ws))
		}()
		return nil
	}
}

// openWS upgrades the request, registers the connection (with its subscription) and
// queues its replay. It returns a nil WS when the client was refused (the upgrader or
// openWS answered it).
func openWS(ctx context.Context, d Deps, up websocket.Upgrader, c echo.Context, user string, topics *presence.Topics) (*presence.WS, *presence.Subscribed, func()) {
	conn, err := up.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil, nil, nil // the upgrader has answered the client
	}
	v1 := conn.Subprotocol() == SubprotocolV1
	ws := presence.NewWS(conn, user, presence.WSOptions{
		V1:            v1,
		QueueLen:      d.Limits.SendQueue,
		PingPeriod:    d.Limits.Heartbeat,
		MaxFrameBytes: int64(d.Limits.MaxMessageBytes),
		MaxAge:        d.Limits.MaxAge,
		Stats:         &d.Hub.Stats,
	})
	sub := presence.Subscribe(ws, topics)
	since := c.QueryParam("since")
	detach, err := attach(ctx, d, sub, since, 0, func(rp *presence.Replay) {
		ws.Replay(wsControl(d, user, v1, since, rp), topics.Filter(rp.Messages))
	})
	if err != nil {
		// Nothing was queued, so no writer runs and this goroutine may write.
		d.Log.Warn("attach", "user", user, "err", err)
		_ = conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		_ = conn.WriteMessage(websocket.TextMessage, mustJSON(errorFrame{Type: "error", Error: statusOf(err).Msg}))
		_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "try again"))
		conn.Close()
		return nil, nil, nil
	}
	return ws, sub, detach
}

// readWS hands the client's frames, as the flood guard allows them, to the inbound
// rules, until the connection ends. Pings count against the same rate.
func readWS(ctx context.Context, in *inbound, rule *topicRule, ws *presence.WS, sub *presence.Subscribed, allow func() bool) {
	ws.GuardPings(allow)
	_ = ws.Serve(func(typ int, data []byte) {
		if !allow() {
			return
		}
		reply, err := onClientFrame(ctx, in, rule, sub, ws.User(), ws.V1(), data)
		switch {
		case err != nil:
			ws.SendJSON(errorFrame{Type: "error", Error: statusOf(err).Msg})
		case reply != nil:
			ws.SendJSON(reply)
		}
	})
}

// wsControl is what a WebSocket hears before its replay: the welcome (bridge.v1), and a
// reset when the replay from ?since= is incomplete. A raw socket that asked to resume
// gets the reset frame too, as it gets error frames: it must not miss messages silently.
func wsControl(d Deps, user string, v1 bool, since string, rp *presence.Replay) [][]byte {
	var out [][]byte
	if v1 {
		out = append(out, mustJSON(welcomeFrame{
			Type: "welcome", User: user, Instance: d.Instance, Cursor: rp.Head,
			Resumed: since != "" && rp.Reset == "",
		}))
	}
	if rp.Reset != "" {
		out = append(out, mustJSON(presence.NewResetFrame(rp.Reset)))
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always marshal
	}
	return b
}

// onClientFrame handles one frame a client sent: in raw mode the whole frame is the
// message; in bridge.v1 mode it is a JSON frame.
func onClientFrame(ctx context.Context, in *inbound, rule *topicRule, sub *presence.Subscribed, user string, v1 bool, data []byte) (reply any, err error) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if !v1 {
		if len(data) == 0 {
			return nil, errEmptyMessage
		}
		return nil, in.send(ctx, user, "", data)
	}
	f, err := decodeClientFrame(data)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case frameSend:
		return nil, in.send(ctx, user, f.RoutingKey, f.Body)
	case frameSubscribe:
		t, err := rule.parse(f.Topics)
		if err != nil {
			return nil, err
		}
		sub.Set(t)
		return subscribedFrame{Type: "subscribed", Topics: append([]string{}, t.Keys()...)}, nil
	}
	return nil, nil
}
