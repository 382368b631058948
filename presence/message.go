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

	rawOnce sync.Once
	raw     *websocket.PreparedMessage
	v1Once  sync.Once
	v1      *websocket.PreparedMessage
	v1JSON  []byte
}

// Broadcast reports whether the message goes to every connection.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Size is the number of bytes the message holds in a send queue.
func (m *Message) Size() int { return len(m.Body) + len(m.ID) + len(m.RoutingKey) }

// RawFrame is the WebSocket frame of raw mode: the body verbatim, as text when it is
// UTF-8 and as binary otherwise.
func (m *Message) RawFrame() *websocket.PreparedMessage {
	m.rawOnce.Do(func() {
		typ := websocket.TextMessage
		if !utf8.Valid(m.Body) {
			typ = websocket.BinaryMessage
		}
		m.raw = mustPrepare(typ, m.Body)
	})
	return m.raw
}

// V1JSON is the bridge.v1 "message" frame as JSON.
func (m *Message) V1JSON() []byte {
	m.v1Once.Do(func() {
		m.v1JSON = encodeV1(m)
		m.v1 = mustPrepare(websocket.TextMessage, m.v1JSON)
	})
	return m.v1JSON
}

// V1Frame is the bridge.v1 "message" frame, ready to write.
func (m *Message) V1Frame() *websocket.PreparedMessage {
	m.V1JSON()
	return m.v1
}

type v1Message struct {
	Type       string          `json:"type"`
	ID         string          `json:"id,omitempty"`
	RoutingKey string          `json:"routingKey"`
	Data       json.RawMessage `json:"data"`
}

func encodeV1(m *Message) []byte {
	f := v1Message{Type: "message", ID: m.ID, RoutingKey: m.RoutingKey, Data: DataJSON(m.Body)}
	b, err := json.Marshal(f)
	if err != nil { // cannot happen: DataJSON always yields valid JSON
		panic(err)
	}
	return b
}

// DataJSON is the "data" of a frame: the body itself when it is JSON, else the body as a
// JSON string (bytes that are not UTF-8 become U+FFFD).
func DataJSON(body []byte) json.RawMessage {
	if len(body) > 0 && json.Valid(body) {
		return body
	}
	b, _ := json.Marshal(string(body))
	return b
}

func mustPrepare(typ int, data []byte) *websocket.PreparedMessage {
	pm, err := websocket.NewPreparedMessage(typ, data)
	if err != nil { // only fails on compression errors, and compression is off
		panic(err)
	}
	return pm
}
