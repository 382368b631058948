package handlers

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// requireMetricsKey guards /metrics with BRIDGE_METRICS_KEY, a bearer key of its own
// (Prometheus: authorization.credentials), apart from BRIDGE_API_KEY so a scraper
// cannot publish. The metrics name no user, but say how many are connected, how the
// broker is doing and what the process is: not for the public. An empty key leaves
// /metrics open, for a private network or a sidecar scrape.
func requireMetricsKey(key string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if key == "" {
			return next
		}
		return func(c echo.Context) error {
			scheme, got, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(key)) != 1 {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				return &Error{Status: http.StatusUnauthorized, Msg: "send Authorization: Bearer <BRIDGE_METRICS_KEY>"}
			}
			return next(c)
		}
	}
}
