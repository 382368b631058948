package presence

import (
	"encoding/json"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Message is one delivery on its way to browsers. It is encoded at most once per wire
// format and the bytes are shared by every recipient, so a broadcast to N connections
// costs one encoding, not N.
type Message struct {
	ID string // history cursor; empty when the message was not recorded
	// Prev is the ID of the message before this one in the same history stream (the
	// user's, or the broadcasts'), "" when none is kept. History.Append sets it. An
	// instance that has handed Prev (or a later message of that stream) to its
	// connections has missed nothing in between; one that has not has a gap that
	// History.After fills. Relayed messages carry it for that check.
	Prev       string
	UserID     string // recipient; empty means every connection
	RoutingKey string
	Body       []byte

	// Complete WebSocket frames, built once and shared by every recipient's writer.
	rawOnce sync.Once
	raw     []byte
	v1Once  sync.Once
	v1      []byte
	v1JSON  []byte     // v1 without its header
	sse     [2]sseOnce // SSE events: [0] body verbatim, [1] bridge.v1 frame
}

// Broadcast reports whether the message goes to every connection.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Size is the number of bytes the message holds in a send queue.
func (m *Message) Size() int { return len(m.Body) + len(m.ID) + len(m.RoutingKey) }

// RawFrame is the WebSocket frame of raw mode: the body verbatim, as text when it is
// UTF-8 and as binary otherwise (a text frame must be UTF-8; browsers fail the
// connection on one that is not).
func (m *Message) RawFrame() []byte {
	m.rawOnce.Do(func() {
		op := websocket.TextMessage
		if !utf8.Valid(m.Body) {
			op = websocket.BinaryMessage
		}
		m.raw = serverFrame(op, m.Body)
	})
	return m.raw
}

// V1JSON is the bridge.v1 "message" frame as JSON.
func (m *Message) V1JSON() []byte {
	m.v1Once.Do(func() {
		// One buffer holds both: the JSON is encoded after room for the longest header,
		// and the header is put right before it.
		b := encodeV1(m, maxFrameHeader)
		n := len(b) - maxFrameHeader
		start := maxFrameHeader - frameHeaderLen(n)
		putFrameHeader(b[start:maxFrameHeader], websocket.TextMessage, n)
		m.v1 = b[start:]
		m.v1JSON = b[maxFrameHeader:len(b):len(b)]
	})
	return m.v1JSON
}

// V1Frame is the bridge.v1 "message" frame, ready to write.
func (m *Message) V1Frame() []byte {
	m.V1JSON()
	return m.v1
}

// encodeV1 writes {"type":"message","id":…,"routingKey":…,"data":…} by hand rather than
// with json.Marshal, which would compact a JSON body: the data is the body's own bytes,
// so every transport carries the same bytes.
// The JSON starts after skip unused bytes.
func encodeV1(m *Message, skip int) []byte {
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
