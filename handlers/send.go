package handlers

import (
	"context"
	"encoding/json"
	"mime"
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
		var req sendRequest
		user, err := admitClientPost(c.Request(), auth, rates, maxBytes+4096, &req)
		if err != nil {
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

// requireJSON refuses a body that is not declared application/json with 415.
func requireJSON(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return &Error{Status: http.StatusUnsupportedMediaType, Msg: "send the body as Content-Type: application/json"}
	}
	return nil
}

// admitClientPost is how a client's POST (/api/send, /api/ack, /api/pong) is let in:
// JSON only — a page may POST text/plain, form data or multipart to any site without
// a preflight, carrying the user's cookie; application/json needs a preflight, which
// the origin rules answer — then the user's auth and message rate, then the body,
// at most limit bytes, decoded into v. It returns the user.
func admitClientPost(r *http.Request, auth *Auth, rates *userRates, limit int, v any) (string, error) {
	if err := requireJSON(r); err != nil {
		return "", err
	}
	user, err := auth.Admit(r, "")
	if err != nil {
		return "", err
	}
	if err := rates.allow(user); err != nil {
		return "", err
	}
	if err := decodeJSON(r, limit, v); err != nil {
		return "", err
	}
	return user, nil
}
