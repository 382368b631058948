package handlers

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/presence"
)

// preflightMaxAge is how long a browser may reuse a CORS preflight answer: the rules
// change only with a restart.
const preflightMaxAge = "600"

// attach registers conn on this instance and in the directory, with load receiving
// what the client missed after cursor (see Router.Attach). detach undoes both.
func attach(ctx context.Context, d Deps, conn presence.Conn, cursor string, limit int, load func(*presence.Replay)) (detach func(), err error) {
	// A connection that arrives after the hub drained would never be told to go, and an
	// open SSE response or poll would hold up the HTTP server's Shutdown.
	if d.Draining != nil && d.Draining() {
		return nil, errDraining
	}
	if err := d.Router.Attach(ctx, conn, cursor, limit, load); err != nil {
		return nil, err
	}
	return func() { d.Router.Detach(ctx, conn) }, nil
}

var errOrigin = &Error{Status: http.StatusForbidden, Msg: "origin not allowed: set BRIDGE_ALLOWED_ORIGINS"}

var errDraining = &Error{Status: http.StatusServiceUnavailable, Msg: "this instance is shutting down: connect again", RetryAfter: "1"}

// allowOrigin lets a page on another allowed origin read SSE, poll and send answers:
// EventSource and fetch need CORS headers, where WebSocket only needs the Origin check.
func allowOrigin(a *Auth) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			origin := c.Request().Header.Get("Origin")
			if origin == "" {
				return next(c)
			}
			if !a.CheckOrigin(c.Request()) {
				return errOrigin
			}
			h := c.Response().Header()
			h.Set("Access-Control-Allow-Origin", origin)
			// A wildcard lets any page read answers got with a token it holds, but not
			// ride the user's bridge_token cookie: that needs the origin named.
			if !a.wildcardOnly(origin) {
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			h.Add("Vary", "Origin")
			return next(c)
		}
	}
}

// handlePreflight answers the CORS preflight of a JSON POST with a token header.
func handlePreflight() echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		h.Set("Access-Control-Max-Age", preflightMaxAge)
		return c.NoContent(http.StatusNoContent)
	}
}
