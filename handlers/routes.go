// Package handlers holds Pushbridge's HTTP API: every route is listed in NewServer.
package handlers

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/app/idempotency"
	"github.com/pushbridge/pushbridge/presence"
)

// Limits are the per-connection limits of every transport.
type Limits struct {
	MaxMessageBytes int           // largest inbound frame or body
	SendQueue       int           // queued messages before a client counts as slow
	SendQueueBytes  int           // queued bytes before a client counts as slow; a replay fills at most half (0: the transport's default)
	Heartbeat       time.Duration // ping / heartbeat period
	MaxAge          time.Duration // WebSockets and SSE streams end themselves before this age; 0: never

	MessageRate      int           // inbound messages per second per connection (per user on HTTP); 0: unlimited
	MessageBurst     int           // inbound messages at once before MessageRate applies
	ByteRate         int           // inbound payload bytes per second per WebSocket, burst 2×MaxMessageBytes; 0: unlimited
	UserRate         int           // costly requests per second per user on this instance (see newUserBudget); 0: unlimited
	UserBurst        int           // costly requests at once before UserRate applies
	MaxConns         int           // connections on this instance, every transport; 0: unlimited
	MaxConnsPerUser  int           // connections of one user on this instance; 0: unlimited
	MaxQueryBytes    int           // longest query string; 0: unlimited
	HandshakeTimeout time.Duration // WebSocket handshake; 0: handshakeTimeout
}

// Deps is what the routes need.
type Deps struct {
	Instance   string
	Hub        *presence.Hub // where connections attach, replay and detach
	Directory  presence.Directory
	Instances  presence.Instances  // the live instances, for GET /api/instances
	Dispatcher presence.Dispatcher // what BRIDGE_INBOUND=broadcast hands a client's message to
	Publisher  Publisher
	// Idempotency remembers /api/publish's answers by Idempotency-Key (in Redis when
	// the instances share one); nil: in this process's memory.
	Idempotency idempotency.Store
	Inbound     string   // broker | broadcast | off
	InboundKeys []string // routing keys clients may send with; "*": any but ConsumedKeys
	Auth        *Auth
	Limits      Limits
	Ready       func() error // nil when this instance should get traffic
	Draining    func() bool  // true once the instance drains: new connections are refused; nil: never
	Metrics     http.Handler
	MetricsKey  string // bearer key of /metrics; empty: open
	Log         *slog.Logger

	// Hijacking is told that a request's connection is about to be taken over, as a
	// WebSocket or an HTTP/1.1 SSE stream, which its HTTP server then no longer reports
	// on; ended is called once, when that connection has ended or the take-over failed.
	// nil: nobody is told.
	Hijacking func(r *http.Request) (ended func())

	// ConsumedKeys are the routing keys our own queues are bound with; clients may not
	// publish to them (see inbound).
	ConsumedKeys []string
}

// NewServer returns the HTTP handler with every route of Pushbridge.
func NewServer(d Deps) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Log.Error)
	budget := newUserBudget(d.Limits)
	in := newInbound(d.Inbound, d.InboundKeys, d.Publisher, d.Dispatcher, d.ConsumedKeys, budget)
	dr := newDoor(d, budget)
	topics := newTopicRule(d.Inbound, d.InboundKeys, d.ConsumedKeys)
	e.Use(limitQuery(d.Limits.MaxQueryBytes))

	e.GET("/healthz", handleHealth())
	e.GET("/readyz", handleReady(d.Ready, d.Auth.Dev))
	e.GET("/metrics", echo.WrapHandler(d.Metrics), requireMetricsKey(d.MetricsKey))

	e.GET("/ws", handleWS(dr, topics, in, d.Limits, d.Instance, d.Log, false))
	e.GET("/ws/yxd/:userId", handleWS(dr, topics, in, d.Limits, d.Instance, d.Log, true))
	streams := &sseStreams{} // those that answer their heartbeats (?pong=1)
	e.GET("/sse", handleSSE(dr, topics, d.Limits, d.Instance, d.Log, streams), allowOrigin(d.Auth))
	e.GET("/poll", handlePoll(dr, topics, d.Limits.Heartbeat), allowOrigin(d.Auth))
	rates := newUserRates(d.Limits) // what an HTTP client sends: messages and receipts alike
	e.POST("/api/send", handleSend(d.Auth, rates, in, d.Limits.MaxMessageBytes), allowOrigin(d.Auth))
	e.OPTIONS("/api/send", handlePreflight(), allowOrigin(d.Auth))
	e.POST("/api/ack", handleAck(d.Auth, rates, d.Hub), allowOrigin(d.Auth))
	e.OPTIONS("/api/ack", handlePreflight(), allowOrigin(d.Auth))
	e.POST("/api/pong", handlePong(d.Auth, rates, d.Hub, streams, d.Limits.Heartbeat), allowOrigin(d.Auth))
	e.OPTIONS("/api/pong", handlePreflight(), allowOrigin(d.Auth))

	e.GET("/", handleAsset("index.html"))
	e.GET("/bridge.js", handleAsset("bridge.js"))
	e.GET("/bridge.d.ts", handleAsset("bridge.d.ts"))

	if d.Idempotency == nil {
		d.Idempotency = idempotency.NewMemory(presence.DedupeWindow, idempotency.MaxMemoryKeys)
	}
	e.POST("/api/publish", handlePublish(d.Publisher, d.Idempotency, d.Limits.MaxMessageBytes, d.Log), d.Auth.RequireAPIKey)
	e.GET("/api/instances", handleInstances(d.Instances), d.Auth.RequireAPIKey)
	e.GET("/api/presence", handlePresence(d.Instances, d.Directory), d.Auth.RequireAPIKey)
	e.GET("/api/presence/:userId", handleUserPresence(d.Directory), d.Auth.RequireAPIKey)
	return e
}

// limitQuery answers 414 to a query string over max bytes, before any handler parses it.
func limitQuery(max int) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if max > 0 && len(c.Request().URL.RawQuery) > max {
				return &Error{Status: http.StatusRequestURITooLong, Msg: "query string is over BRIDGE_MAX_QUERY_BYTES"}
			}
			return next(c)
		}
	}
}
