package handlers

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/app/idempotency"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	RoutingKey string          `json:"routingKey"`
	UserID     string          `json:"userId"` // the recipient (header x-user-id); empty: as the data says
	Data       json.RawMessage `json:"data"`   // the message body: JSON, or a string sent as its text
}

// handlePublish publishes to RabbitMQ and answers once the broker has confirmed. With
// an Idempotency-Key, a request that repeats one answered within the window gets the
// same answer and publishes nothing (see idempotency.go).
func handlePublish(pub Publisher, idem idempotency.Store, maxBytes int, log *slog.Logger) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, err := idempotencyKey(c.Request().Header)
		if err != nil {
			return err
		}
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
		p := Publishing{RoutingKey: req.RoutingKey, Body: body, UserID: req.UserID, MessageID: key}
		ctx := c.Request().Context()
		publish := func() (idempotency.Result, bool, error) {
			id, err := pub.Publish(ctx, p)
			if err != nil {
				return idempotency.Result{}, false, err
			}
			b, err := json.Marshal(map[string]string{"id": id, "routingKey": p.RoutingKey})
			return idempotency.Result{Status: http.StatusAccepted, Body: append(b, '\n')}, true, err
		}
		if key == "" {
			res, _, err := publish()
			if err != nil {
				return err
			}
			return c.JSONBlob(res.Status, res.Body)
		}
		res, replayed, err := idempotency.Do(ctx, idem, key, fingerprint(p), idempotencyWait, log, publish)
		if err != nil {
			return err
		}
		if replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
		return c.JSONBlob(res.Status, res.Body)
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
