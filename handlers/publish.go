package handlers

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/app/broker"
)

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	RoutingKey string          `json:"routingKey"`
	UserID     string          `json:"userId"` // sent as header x-user-id; empty: as the data says
	Data       json.RawMessage `json:"data"`   // the message body: JSON, or a string sent as its text
}

// handlePublish publishes to RabbitMQ and answers once the broker has confirmed.
func handlePublish(pub Publisher, maxBytes int) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req publishRequest
		if err := decodeJSON(c.Request(), maxBytes+4096, &req); err != nil {
			return err
		}
		switch {
		case req.RoutingKey == "":
			return &Error{Status: http.StatusUnprocessableEntity, Msg: "routingKey is required"}
		case len(req.RoutingKey) > 255:
			return &Error{Status: http.StatusUnprocessableEntity, Msg: "routingKey is longer than 255 bytes"}
		case len(req.Data) == 0 || string(req.Data) == "null":
			return &Error{Status: http.StatusUnprocessableEntity, Msg: "data is required"}
		}
		body := bodyOf(req.Data)
		if len(body) > maxBytes {
			return &Error{Status: http.StatusRequestEntityTooLarge, Msg: "data is over BRIDGE_MAX_MESSAGE_BYTES"}
		}
		p := broker.Publishing{RoutingKey: req.RoutingKey, Body: body, MessageID: NewID()}
		if req.UserID != "" {
			p.Headers = map[string]any{"x-user-id": req.UserID}
		}
		if err := pub.Publish(c.Request().Context(), p); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"id": p.MessageID, "routingKey": p.RoutingKey})
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
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &Error{Status: http.StatusRequestTimeout, Msg: "the body did not arrive within BRIDGE_BODY_TIMEOUT"}
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
