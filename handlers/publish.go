package handlers

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
)

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	RoutingKey string          `json:"routingKey"`
	UserID     string          `json:"userId"` // the recipient (header x-user-id); empty: as the data says
	Data       json.RawMessage `json:"data"`   // the message body: JSON, or a string sent as its text
}

// handlePublish publishes to RabbitMQ and answers once the broker has confirmed.
func handlePublish(pub Publisher, maxBytes int) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req publishRequest
		if err := decodeJSON(c.Request(), maxBytes+4096, &req); err != nil {
			return err
		}
		if req.RoutingKey == "" {
			return &Error{Status: http.StatusUnprocessableEntity, Msg: "routingKey is required"}
		}
		body, err := transport.MessageBody(req.RoutingKey, req.Data, maxBytes)
		if err != nil {
			return err
		}
		id, err := pub.Publish(c.Request().Context(), Publishing{RoutingKey: req.RoutingKey, Body: body, UserID: req.UserID})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"id": id, "routingKey": req.RoutingKey})
	}
}

// decodeJSON reads one JSON object of at most max bytes into v, strictly.
func decodeJSON(r *http.Request, max int, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, int64(max)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Msg: "body is too large"}
		}
		if errors.Is(err, io.EOF) {
			return &Error{Status: http.StatusBadRequest, Msg: "empty body: send a JSON object"}
		}
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &Error{Status: http.StatusBadRequest, Msg: "malformed JSON: " + err.Error()}
		}
		return &Error{Status: http.StatusUnprocessableEntity, Msg: "invalid body: " + err.Error()}
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Msg: "malformed JSON: more than one value"}
	}
	return nil
}
