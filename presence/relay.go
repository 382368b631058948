package presence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Relay carries messages between instances: to the instance that holds a user's
// connections, or to every instance for a broadcast.
//
// It is a fast path, not a guarantee: a message sent while the receiver is not
// listening (it is resubscribing, or gone) is lost to the live stream. The history is
// what makes that harmless. A receiver keeps, per user and for the broadcasts, the ID
// of the last message it handed to its connections; a relayed message whose Prev is
// later than that reveals a gap, which History.After fills. And each time Run calls
// subscribed, everything sent before may have been missed: the receiver reads the
// history after its last IDs at once rather than wait for the next message.
type Relay interface {
	// Send hands m to instance. A message to an instance that is not listening is
	// dropped without an error.
	Send(ctx context.Context, instance string, m *Message) error
	// Broadcast hands m to every other instance; the sender delivers its own copy.
	Broadcast(ctx context.Context, m *Message) error
	// Run hands to deliver, one at a time and in arrival order, each message sent to
	// this instance or broadcast by another, until ctx ends. It calls subscribed each
	// time it starts listening, first and after every reconnect, before the messages
	// that follow.
	Run(ctx context.Context, deliver func(*Message), subscribed func()) error
}

// relayVersion starts every relayed payload, so a format change is detected rather
// than misread while old and new instances run side by side.
const relayVersion = 1

// errBadRelay is returned for a payload that is not a relayed message.
var errBadRelay = errors.New("malformed relay payload")

// encodeRelay writes m compactly: version, id, prev, sender, user and routing key,
// then the body as the rest. Bodies may be binary; nothing is escaped.
func encodeRelay(from string, m *Message) ([]byte, error) {
	id, err := cursorOrZero(m.ID)
	if err != nil {
		return nil, fmt.Errorf("relay: message id: %w", err)
	}
	prev, err := cursorOrZero(m.Prev)
	if err != nil {
		return nil, fmt.Errorf("relay: message prev: %w", err)
	}
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+3*binary.MaxVarintLen32+len(from)+len(m.UserID)+len(m.RoutingKey)+len(m.Body))
	b = append(b, relayVersion)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, prev)
	for _, s := range []string{from, m.UserID, m.RoutingKey} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, m.Body...), nil
}

// decodeRelay reads what encodeRelay wrote, and who sent it.
func decodeRelay(b []byte) (m *Message, from string, err error) {
	if len(b) == 0 || b[0] != relayVersion {
		return nil, "", errBadRelay
	}
	b = b[1:]
	var nums [2]uint64
	for i := range nums {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, "", errBadRelay
		}
		nums[i], b = n, b[k:]
	}
	var strs [3]string
	for i := range strs {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, "", errBadRelay
		}
		strs[i], b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	m = &Message{ID: zeroOrCursor(nums[0]), Prev: zeroOrCursor(nums[1]), UserID: strs[1], RoutingKey: strs[2], Body: append([]byte(nil), b...)}
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
