package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// preflightMaxAge is how long a browser may reuse a CORS preflight answer: the rules
// change only with a restart.
const preflightMaxAge = "600"

var errOrigin = &Error{Status: http.StatusForbidden, Msg: "origin not allowed: set BRIDGE_ALLOWED_ORIGINS"}

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
