package presence

import "sync"

// Message is one delivery on its way to browsers. It is encoded at most once per wire
// format and the bytes are shared by every recipient, so a broadcast to N connections
// costs one encoding, not N (see Encoded).
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

// Broadcast reports whether the message goes to every connection.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Size is the number of bytes the message holds in a send queue.
func (m *Message) Size() int { return len(m.Body) + len(m.ID) + len(m.RoutingKey) }
