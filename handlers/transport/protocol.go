package transport

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/presence"
)

// The wire formats a message is cached in (see presence.Message.Encoded): each is
// built once per message and shared by every connection that sends it.
const (
	encWSRaw  presence.Encoding = iota // raw-mode WebSocket frame
	encWSV1                            // bridge.v1 WebSocket frame; its payload is the bridge.v1 JSON
	encSSERaw                          // SSE event, data the body verbatim
	encSSEV1                           // SSE event, data the bridge.v1 JSON
	encodings
)

// A message has room for every format above.
const _ = uint(presence.Encodings - encodings)

// SubprotocolV1 is bridge.v1: the WebSocket subprotocol (and ?protocol= of SSE) that
// selects JSON frames; without it a socket is in raw mode.
const SubprotocolV1 = "bridge.v1"

// welcomeFrame is the first frame of a bridge.v1 connection (SSE: the welcome event).
type welcomeFrame struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Instance string `json:"instance"`
	Resumed  bool   `json:"resumed"`
	Cursor   string `json:"cursor,omitempty"` // the newest id when the connection registered
}

func newWelcome(user, instance string, rp *presence.Replay) welcomeFrame {
	return welcomeFrame{Type: "welcome", User: user, Instance: instance, Cursor: rp.Head, Resumed: rp.Resumed()}
}

// resetFrame tells a client that messages were missed and could not be replayed (the
// bridge.v1 frame, and the data of the SSE "reset" event).
type resetFrame struct {
	Type   string `json:"type"` // "reset"
	Reason string `json:"reason"`
}

func newReset(reason string) resetFrame { return resetFrame{Type: "reset", Reason: reason} }

// errorFrame says what was wrong with what the client sent, or why it was refused.
type errorFrame struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

// subscribedFrame answers a subscribe frame with the subscription now in force.
type subscribedFrame struct {
	Type   string   `json:"type"`
	Topics []string `json:"topics"` // empty: everything
}

// Reconnect is the bridge.v1 frame (SSE: event, poll: the answer's "reconnect") that
// asks a client to come back after a delay: the instance drains, or the connection
// reached its maximum age.
type Reconnect struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	AfterMS int64  `json:"after_ms"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always marshal
	}
	return b
}

// V1JSON is the bridge.v1 "message" frame of m as JSON, shared by every transport.
func V1JSON(m *presence.Message) []byte { return framePayload(v1Frame(m)) }

// encodeV1 writes {"type":"message","id":…,"routingKey":…,"data":…} by hand rather than
// with json.Marshal, which would compact a JSON body: the data is the body's own bytes,
// so every transport carries the same bytes.
// The JSON starts after skip unused bytes.
func encodeV1(m *presence.Message, skip int) []byte {
	data := DataJSON(m.Body)
	b := make([]byte, skip, skip+64+len(m.ID)+len(m.RoutingKey)+len(data))
	b = append(b, `{"type":"message"`...)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, m.ID)
	}
	b = append(b, `,"routingKey":`...)
	b = appendJSONString(b, m.RoutingKey)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// appendJSONString appends s as encoding/json writes it. Ids and routing keys are
// nearly always plain ASCII, which needs no escaping and is copied as it is; anything
// else goes through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// DataJSON is the "data" of a frame: the body itself when it is JSON, else the body as a
// JSON string (bytes that are not UTF-8 become U+FFFD). JSON is checked for UTF-8 too:
// json.Valid lets bad bytes inside strings through, and a text frame must be UTF-8.
func DataJSON(body []byte) json.RawMessage {
	if len(body) > 0 && utf8.Valid(body) && json.Valid(body) {
		return body
	}
	b, _ := json.Marshal(string(body))
	return b
}

// Types of the frames a bridge.v1 client sends.
const (
	FrameSend      = "send"
	FrameSubscribe = "subscribe"
)

// MaxRoutingKeyBytes is AMQP's limit on a routing key (a short string).
const MaxRoutingKeyBytes = 255

// Violation is the kind of rule a client's frame or message breaks; handlers answers
// each kind with its HTTP status (and a WebSocket client with an error frame).
type Violation int

const (
	Unprocessable Violation = iota // a rule of the fields (422)
	Malformed                      // not a JSON object, or an unknown frame type (400)
	TooLarge                       // data over BRIDGE_MAX_MESSAGE_BYTES (413)
)

// RuleError says which rule what a client or backend sent breaks.
type RuleError struct {
	Kind Violation
	Msg  string
}

func (e *RuleError) Error() string { return e.Msg }

// ErrEmptyMessage: a client sent a message with nothing in it.
var ErrEmptyMessage = &RuleError{Unprocessable, "empty message"}

// MessageBody is the body of a message published with routingKey and data — a client's
// send frame, POST /api/send, POST /api/publish — by the rules they share: a routing
// key AMQP takes, data present (not null), and a body (a JSON string's text, anything
// else the JSON as it is) of at most maxBytes (0: no limit beyond the frame's own).
func MessageBody(routingKey string, data json.RawMessage, maxBytes int) ([]byte, error) {
	switch {
	case len(routingKey) > MaxRoutingKeyBytes:
		return nil, &RuleError{Unprocessable, fmt.Sprintf("routingKey is longer than %d bytes", MaxRoutingKeyBytes)}
	case len(data) == 0 || string(data) == "null":
		return nil, &RuleError{Unprocessable, "data is required"}
	}
	body := bodyOf(data)
	if maxBytes > 0 && len(body) > maxBytes {
		return nil, &RuleError{TooLarge, "data is over BRIDGE_MAX_MESSAGE_BYTES"}
	}
	return body, nil
}

// bodyOf turns a message's data into its body: a JSON string becomes its text,
// anything else stays the JSON it is.
func bodyOf(data json.RawMessage) []byte {
	var s string
	if len(data) > 0 && data[0] == '"' && json.Unmarshal(data, &s) == nil {
		return []byte(s)
	}
	return data
}

// ClientFrame is a decoded bridge.v1 client frame.
type ClientFrame struct {
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

// DecodeClientFrame reads one bridge.v1 frame. It has no side effects, so anything a
// client can send is fuzzed against it; a *RuleError says what was wrong, for an
// error frame.
func DecodeClientFrame(data []byte) (ClientFrame, error) {
	var w wireFrame
	if err := json.Unmarshal(data, &w); err != nil {
		return ClientFrame{}, &RuleError{Malformed, "frame is not a JSON object: " + err.Error()}
	}
	f := ClientFrame{Type: w.Type, RoutingKey: w.RoutingKey, Topics: w.Topics}
	switch w.Type {
	case FrameSend:
		body, err := MessageBody(w.RoutingKey, w.Data, 0)
		if err != nil {
			return ClientFrame{}, err
		}
		if f.Body = body; len(f.Body) == 0 {
			return ClientFrame{}, ErrEmptyMessage
		}
	case FrameSubscribe:
	default:
		return ClientFrame{}, &RuleError{Malformed, fmt.Sprintf("unknown frame type %.32q: want send or subscribe", w.Type)}
	}
	return f, nil
}
