package presence

import (
	"encoding/json"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Message is one delivery on its way to browsers. It is encoded at most once per wire
// format and the bytes are shared by every recipient, so a broadcast to N connections
// costs one encoding, not N. The id each connection sees is that connection's cursor
// (see Cursor), different per connection: the shared encodings are split around it and
// each writer puts its own id in between.
type Message struct {
	// Epoch and Seq are the message's place in its stream (the user's, or the
	// broadcasts'): History.Append sets them. Seq 0: not recorded.
	Epoch      string
	Seq        uint64
	Time       int64  // when it was recorded, Unix ms: orders a replay of two streams
	UserID     string // recipient; empty means every connection
	RoutingKey string
	Body       []byte

	// Complete WebSocket frames, built once and shared by every recipient's writer.
	rawOnce sync.Once
	raw     []byte
	v1Once  sync.Once
	v1Pre   []byte     // {"type":"message","id":"   (the id goes here)
	v1Post  []byte     // ","routingKey":…,"data":…}
	sse     [2]sseOnce // SSE events: [0] body verbatim, [1] bridge.v1 frame
}

// Pos is the message's place in its stream.
func (m *Message) Pos() Pos { return Pos{Epoch: m.Epoch, Seq: m.Seq} }

// Broadcast reports whether the message goes to every connection.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Size is the number of bytes the message holds in a send queue.
func (m *Message) Size() int { return len(m.Body) + maxCursorLen + len(m.RoutingKey) }

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

// V1Parts are the bridge.v1 "message" frame's JSON before and after the id, shared by
// every recipient.
func (m *Message) V1Parts() (pre, post []byte) {
	m.v1Once.Do(func() { m.v1Pre, m.v1Post = encodeV1(m) })
	return m.v1Pre, m.v1Post
}

// V1JSON is the bridge.v1 "message" frame as JSON, with id, in a new buffer: for
// answers built per request (poll).
func (m *Message) V1JSON(id Cursor) []byte {
	pre, post := m.V1Parts()
	b := make([]byte, 0, len(pre)+maxCursorLen+len(post))
	return append(id.Append(append(b, pre...)), post...)
}

// appendV1Head appends to scratch what m's bridge.v1 frame has of its own for one
// connection at id: the WebSocket header (its length depends on the id's) and the id.
// The frame is then scratch[hs:is], pre, scratch[is:ie], post (see V1Parts): the shared
// JSON is referenced, not copied, so a recipient costs no allocation once its scratch
// buffer has grown.
func (m *Message) appendV1Head(scratch []byte, id Cursor) (out []byte, hs, is, ie int) {
	pre, post := m.V1Parts()
	scratch = append(scratch, noHeader[:]...)
	is = len(scratch)
	scratch = id.Append(scratch)
	ie = len(scratch)
	n := len(pre) + ie - is + len(post)
	hs = is - frameHeaderLen(n)
	putFrameHeader(scratch[hs:is], websocket.TextMessage, n)
	return scratch, hs, is, ie
}

// noHeader is the room appendV1Head reserves for a header before it knows its length.
var noHeader [maxFrameHeader]byte

// encodeV1 writes {"type":"message","id":…,"routingKey":…,"data":…} by hand rather than
// with json.Marshal, which would compact a JSON body: the data is the body's own bytes,
// so every transport carries the same bytes. It returns the JSON before and after the
// id's text.
func encodeV1(m *Message) (pre, post []byte) {
	data := DataJSON(m.Body)
	pre = []byte(`{"type":"message","id":"`)
	b := make([]byte, 0, 32+len(m.RoutingKey)+len(data))
	b = append(b, `","routingKey":`...)
	b = appendJSONString(b, m.RoutingKey)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return pre, append(b, '}')
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
