package handlers

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// ackRequest is the body of POST /api/ack.
type ackRequest struct {
	IDs []string `json:"ids"`
}

// maxAckBodyBytes bounds an ack request: MaxAckIDs ids of bounded size, with room.
const maxAckBodyBytes = 64 << 10

// handleAck serves POST /api/ack: delivery receipts from SSE and poll clients, as a
// WebSocket client sends them in an ack frame. Same admission and rate as /api/send.
func handleAck(auth *Auth, rates *userRates, hub *presence.Hub) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req ackRequest
		user, err := admitClientPost(c.Request(), auth, rates, maxAckBodyBytes, &req)
		if err != nil {
			return err
		}
		if err := transport.AckIDs(req.IDs); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), sendTimeout)
		defer cancel()
		if err := hub.Ack(ctx, user, req.IDs); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"status": "acked"})
	}
}
