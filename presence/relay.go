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
// Routing goes through a Dispatcher, which publishes on the relay's channels in id
// order; Send and Broadcast hand over a message from Go, in no order relative to
// other senders.
//
// It is a fast path, not a guarantee: a message sent while the receiver is not
// listening (it is resubscribing, or gone) is lost to the live stream. The history is
// what makes that harmless. Each time Run calls subscribed, everything sent before
// may have been missed: the receiver reads History.After(user, cursor) for each of
// its connections before it goes on. A connection's cursor is the last ID it was
// given; since dispatched messages arrive in ID order, one whose Prev is above that
// cursor also reveals a gap.
type Relay interface {
	// Send hands m to instance. A message to an instance that is not listening is
	// dropped without an error.
	Send(ctx context.Context, instance string, m *Message) error
	// Broadcast hands m to every other instance; the sender delivers its own copy.
	// (A dispatched broadcast reaches every instance, the dispatching one included.)
	Broadcast(ctx context.Context, m *Message) error
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
// than misread while old and new instances run side by side (the first design's
// payloads start with 1 and are dropped as malformed).
const relayVersion = 2

// maxRelayHeader bounds the header line: an epoch and five decimal numbers.
const maxRelayHeader = epochLen + 6*21

// Why a relay payload was dropped.
var (
	errBadRelay     = errors.New("malformed relay payload")
	errForeignRelay = errors.New("relay payload of another deployment")
)

// encodeRelay writes m compactly: "\x02<namespace>\n", a header line "<epoch> <seq>
// <time> <len from> <len user> <len routing key>\n" (epoch may be empty, seq 0 when not
// recorded), then sender, user, routing key and body back to back. Bodies may be
// binary; nothing is escaped. The header is text so the dispatch script (Lua) can
// write it too.
func encodeRelay(ns, from string, m *Message) []byte {
	b := make([]byte, 0, 2+len(ns)+maxRelayHeader+len(from)+len(m.UserID)+len(m.RoutingKey)+len(m.Body))
	b = append(b, relayVersion)
	b = append(b, ns...)
	b = append(b, '\n')
	b = append(b, m.Epoch...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, m.Time, 10)
	b = append(b, relayTail(from, m)...)
	return append(b, m.Body...)
}

// relayTail is the part of the payload after the position, up to the body: the rest
// of the header line, then sender, user and routing key.
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

// decodeRelay reads what encodeRelay wrote, and who sent it; a payload of another
// namespace than ns is refused.
func decodeRelay(ns string, b []byte) (m *Message, from string, err error) {
	if len(b) == 0 || b[0] != relayVersion {
		return nil, "", errBadRelay
	}
	nsEnd := bytes.IndexByte(b, '\n')
	if nsEnd < 0 {
		return nil, "", errBadRelay
	}
	if string(b[1:nsEnd]) != ns {
		return nil, "", errForeignRelay
	}
	b = b[nsEnd+1:]
	end := bytes.IndexByte(b[:min(len(b), maxRelayHeader+1)], '\n')
	if end < 0 {
		return nil, "", errBadRelay
	}
	f := strings.Split(string(b[:end]), " ")
	if len(f) != 6 || !validEpoch(f[0]) {
		return nil, "", errBadRelay
	}
	var n [5]uint64
	for i, s := range f[1:] {
		if n[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, "", errBadRelay
		}
	}
	if (f[0] == "") != (n[0] == 0) {
		return nil, "", errBadRelay
	}
	rest := b[end+1:]
	var strs [3]string
	for i, l := range n[2:] {
		if l > uint64(len(rest)) {
			return nil, "", errBadRelay
		}
		strs[i], rest = string(rest[:l]), rest[l:]
	}
	m = &Message{Epoch: f[0], Seq: n[0], Time: int64(n[1]), UserID: strs[1], RoutingKey: strs[2], Body: append([]byte(nil), rest...)}
	return m, strs[0], nil
}
