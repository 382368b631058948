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
// drains, so the platform sends new clients elsewhere. Its body says whether this is a
// dev-mode server, which lets anyone in: a probe or a person looking at a deployment
// sees it at once.
func handleReady(ready func() error, dev bool) echo.HandlerFunc {
	mode := map[string]string{"mode": "production"}
	if dev {
		mode = map[string]string{"mode": "dev", "warning": "dev mode: clients are not authenticated"}
	}
	return func(c echo.Context) error {
		body := map[string]string{"status": "ready"}
		status := http.StatusOK
		if err := ready(); err != nil {
			body = map[string]string{"status": "not ready", "reason": err.Error()}
			status = http.StatusServiceUnavailable
		}
		for k, v := range mode {
			body[k] = v
		}
		return c.JSON(status, body)
	}
}
