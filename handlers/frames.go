package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Types of the frames a bridge.v1 client sends.
const (
	frameSend      = "send"
	frameSubscribe = "subscribe"
)

// maxRoutingKeyBytes is AMQP's limit on a routing key (a short string).
const maxRoutingKeyBytes = 255

var (
	errEmptyMessage = &Error{Status: http.StatusUnprocessableEntity, Msg: "empty message"}
)

// clientFrame is a decoded bridge.v1 client frame.
type clientFrame struct {
	Type       string
	RoutingKey string   // send: "" means the default inbound key
	Body       []byte   // send: the message body, never empty
	Topics     []string // subscribe
}

// wireFrame is a bridge.v1 client frame as JSON.
type wireFrame struct {
	Type       string          `json:"type"`
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"`
	Topics     []string        `json:"topics"`
}

// decodeClientFrame reads one bridge.v1 frame. It has no side effects, so anything a
// client can send is fuzzed against it; errors say what was wrong, for an error frame.
func decodeClientFrame(data []byte) (clientFrame, error) {
	var w wireFrame
	if err := json.Unmarshal(data, &w); err != nil {
		return clientFrame{}, &Error{Status: http.StatusBadRequest, Msg: "frame is not a JSON object: " + err.Error()}
	}
	f := clientFrame{Type: w.Type, RoutingKey: w.RoutingKey, Topics: w.Topics}
	switch w.Type {
	case frameSend:
		if len(w.RoutingKey) > maxRoutingKeyBytes {
			return clientFrame{}, &Error{Status: http.StatusUnprocessableEntity, Msg: "routingKey is longer than 255 bytes"}
		}
		if len(w.Data) == 0 || string(w.Data) == "null" {
			return clientFrame{}, &Error{Status: http.StatusUnprocessableEntity, Msg: "send frame without data"}
		}
		if f.Body = bodyOf(w.Data); len(f.Body) == 0 {
			return clientFrame{}, errEmptyMessage
		}
	case frameSubscribe:
	default:
		return clientFrame{}, &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("unknown frame type %.32q: want send or subscribe", w.Type)}
	}
	return f, nil
}

// bodyOf turns a frame's data into a message body: a JSON string becomes its text,
// anything else stays the JSON it is.
func bodyOf(data json.RawMessage) []byte {
	var s string
	if len(data) > 0 && data[0] == '"' && json.Unmarshal(data, &s) == nil {
		return []byte(s)
	}
	return data
}
