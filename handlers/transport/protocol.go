package transport

import (
	"encoding/json"
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
