package presence

import "sync"

// Message is one delivery on its way to browsers. It is encoded at most once per wire
// format and the bytes are shared by every recipient, so a broadcast to N connections
// costs one encoding, not N (see Encoded). The id each connection sees is that
// connection's cursor (see Cursor), different per connection: the shared encodings
// leave it out, and each writer puts its own id in.
type Message struct {
	// Epoch and Seq are the message's place in its stream (the user's, or the
	// broadcasts'): History.Append sets them. Seq 0: not recorded.
	Epoch      string
	Seq        uint64
	Time       int64  // when it was recorded, Unix ms: orders a replay of two streams
	UserID     string // recipient; empty means every connection
	RoutingKey string
	Body       []byte
	// MessageID and CorrelationID are the AMQP properties the message was published
	// with, kept in the history so a delivery receipt can name them to the backend.
	MessageID     string
	CorrelationID string

	encoded [Encodings]encoding // the message in each wire format, built once
}

// Encoding names one wire format a message is sent in; handlers/transport defines them
// (WebSocket frames raw and bridge.v1, SSE events raw and bridge.v1).
type Encoding uint8

// Encodings is how many wire formats a message keeps its bytes for.
const Encodings = 4

type encoding struct {
	once sync.Once
	b    []byte
}

// Encoded is m in wire format e: built by encode for the first recipient that asks,
// shared by every other. encode must build the same bytes whoever calls it.
func (m *Message) Encoded(e Encoding, encode func(*Message) []byte) []byte {
	s := &m.encoded[e]
	s.once.Do(func() { s.b = encode(m) })
	return s.b
}

// Pos is the message's place in its stream.
func (m *Message) Pos() Pos { return Pos{Epoch: m.Epoch, Seq: m.Seq} }

// Broadcast reports whether the message goes to every connection.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Size is the number of bytes the message holds in a send queue.
func (m *Message) Size() int { return len(m.Body) + MaxCursorLen + len(m.RoutingKey) }
