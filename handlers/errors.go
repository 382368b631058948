package handlers

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// Error is an error with the HTTP status it answers with.
type Error struct {
	Status     int
	Msg        string
	RetryAfter string // seconds, for 429 and 503
}

func (e *Error) Error() string { return e.Msg }

// statusOf decides, in this one place, the HTTP answer to every error a handler returns.
func statusOf(err error) *Error {
	var he *Error
	var re *transport.RuleError
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &re):
		return &Error{Status: ruleStatus[re.Kind], Msg: re.Msg}
	case errors.Is(err, ErrUnroutable):
		return &Error{Status: http.StatusNotFound, Msg: "unroutable: " + err.Error()}
	case errors.Is(err, ErrBrokerDown):
		return &Error{Status: http.StatusServiceUnavailable, Msg: err.Error(), RetryAfter: "5"}
	case errors.Is(err, presence.ErrUnavailable):
		// Redis failed while a connection registered or replayed: nothing is lost.
		return &Error{Status: http.StatusServiceUnavailable, Msg: "presence is unavailable: connect again", RetryAfter: "2"}
	case errors.Is(err, errInboundOff), errors.Is(err, errInboundReserved):
		return &Error{Status: http.StatusForbidden, Msg: err.Error()}
	case errors.As(err, &ee):
		msg := http.StatusText(ee.Code)
		if s, ok := ee.Message.(string); ok {
			msg = s
		}
		return &Error{Status: ee.Code, Msg: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Msg: "internal error"}
}

// ruleStatus answers each kind of broken rule of what a client or backend sends.
var ruleStatus = map[transport.Violation]int{
	transport.Unprocessable: http.StatusUnprocessableEntity,
	transport.Malformed:     http.StatusBadRequest,
	transport.TooLarge:      http.StatusRequestEntityTooLarge,
}

// errorHandler renders every error as {"error": "..."} with its status.
func errorHandler(log func(msg string, args ...any)) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := statusOf(err)
		if e.Status >= 500 && e.Status != http.StatusServiceUnavailable {
			log("request failed", "path", c.Path(), "err", err)
		}
		if e.RetryAfter != "" {
			c.Response().Header().Set("Retry-After", e.RetryAfter)
		}
		_ = c.JSON(e.Status, map[string]string{"error": e.Msg})
	}
}
