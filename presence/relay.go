package presence

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
)

// Relay carries messages between instances: to the instance that holds a user's
// connections, or to every instance for a broadcast.
//
// Messages are put on it by a Dispatcher, which publishes on the relay's channels in
// id order.
//
// It is a fast path, not a guarantee: a message sent while the receiver is not
// listening (it is resubscribing, or gone) is lost to the live stream. The history is
// what makes that harmless. Each time Run calls subscribed, everything sent before
// may have been missed: the receiver reads History.After(user, cursor) for each of
// its connections before it goes on. A connection's cursor is the last ID it was
// given; since dispatched messages arrive in ID order, one whose Prev is above that
// cursor also reveals a gap.
type Relay interface {
	// Run hands to deliver, one at a time and in arrival order, each message sent to
	// this instance or broadcast, until ctx ends. Call it once per instance. It calls subscribed each
	// time it starts listening, first and after every reconnect, before the messages
	// that follow.
	Run(ctx context.Context, deliver func(*Message), subscribed func()) error
	// Flush returns once what was sent to this instance before the call has been
	// handed to deliver, where the relay can know it; a drain calls it after the last
	// acked delivery, before the clients are sent away.
	Flush(ctx context.Context) error
}

// relayVersion starts every relayed payload, so a format change is detected rather
// than misread while old and new instances run side by side.
const relayVersion = 1

// maxRelayHeader bounds the header line: five decimal numbers of at most 20 digits.
const maxRelayHeader = 1 + 5*21

// errBadRelay is returned for a payload that is not a relayed message.
var errBadRelay = errors.New("malformed relay payload")

// relayTail is the part of the payload after the ids, up to the body: the rest of
// the header line, then sender, user and routing key.
func relayTail(from string, m *Message) []byte {
	b := make([]byte, 0, 3*21+len(from)+len(m.UserID)+len(m.RoutingKey))
	for _, s := range []string{from, m.UserID, m.RoutingKey} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(s)), 10)
	}
	b = append(b, '\n')
	b = append(b, from...)
	b = append(b, m.UserID...)
	return append(b, m.RoutingKey...)
}

// decodeRelay reads a relayed payload, as the dispatch script writes it: a header line
// "\x01<id> <prev> <len from> <len user> <len routing key>\n" (ids 0 when absent),
// then sender, user, routing key and body back to back. Bodies may be binary; nothing
// is escaped. The header is text so the script (Lua) can write it. It returns who
// sent the message.
func decodeRelay(b []byte) (m *Message, from string, err error) {
	if len(b) == 0 || b[0] != relayVersion {
		return nil, "", errBadRelay
	}
	end := bytes.IndexByte(b[:min(len(b), maxRelayHeader+1)], '\n')
	if end < 0 {
		return nil, "", errBadRelay
	}
	f := strings.Split(string(b[1:end]), " ")
	if len(f) != 5 {
		return nil, "", errBadRelay
	}
	var n [5]uint64
	for i, s := range f {
		if n[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, "", errBadRelay
		}
	}
	rest := b[end+1:]
	var strs [3]string
	for i, l := range n[2:] {
		if l > uint64(len(rest)) {
			return nil, "", errBadRelay
		}
		strs[i], rest = string(rest[:l]), rest[l:]
	}
	m = &Message{ID: zeroOrCursor(n[0]), Prev: zeroOrCursor(n[1]), UserID: strs[1], RoutingKey: strs[2], Body: append([]byte(nil), rest...)}
	return m, strs[0], nil
}

// cursorOrZero reads an ID where "" (not recorded, or no previous) is 0.
func cursorOrZero(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return ParseCursor(s)
}

func zeroOrCursor(n uint64) string {
	if n == 0 {
		return ""
	}
	return FormatCursor(n)
}
