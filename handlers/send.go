package handlers

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
)

// sendRequest is the body of POST /api/send.
type sendRequest struct {
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"` // JSON, or a string sent as its text
}

// handleSend serves POST /api/send: what an SSE or poll client sends, following
// BRIDGE_INBOUND like a WebSocket client's send frame.
func handleSend(auth *Auth, rates *userRates, in *inbound, maxBytes int) echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := auth.Admit(c.Request(), "")
		if err != nil {
			return err
		}
		if err := rates.allow(user); err != nil {
			return err
		}
		var req sendRequest
		if err := decodeJSON(c.Request(), maxBytes+4096, &req); err != nil {
			return err
		}
		body, err := transport.MessageBody(req.RoutingKey, req.Data, maxBytes)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), sendTimeout)
		defer cancel()
		if err := in.send(ctx, user, req.RoutingKey, body); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"status": "sent"})
	}
}
