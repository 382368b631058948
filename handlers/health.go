package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

func handleHealth() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

// handleReady answers 503 while the broker (or Redis) is unreachable or the instance
// drains, so the platform sends new clients elsewhere.
func handleReady(ready func() error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := ready(); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	}
}
