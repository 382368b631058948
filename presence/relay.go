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
// Routing goes through a Dispatcher, which records each message in the history before
// it publishes it on the relay's channels; Send and Broadcast hand over messages from
// Go, in no order relative to other senders.
//
// It is a fast path, not a guarantee: a message sent while the receiver is not
// listening (it is resubscribing, or gone) is lost to the live stream, and two
// dispatchers' messages for one stream may arrive out of order. The history is what
// makes that harmless: positions are dense per stream, so a receiver sees a gap and
// catches up from the history; each time Run calls subscribed, everything sent before
// may have been missed, and every connection is caught up; and every heartbeat
// compares each connection with its streams' tops (Hub.Heal).
type Relay interface {
	// Send hands ms to instance, in that order, as one payload. A message to an
	// instance that is not listening is dropped without an error.
	Send(ctx context.Context, instance string, ms ...*Message) error
	// Broadcast hands ms to every other instance; the sender delivers its own copy.
	// (A dispatched broadcast reaches every instance, the dispatching one included.)
	Broadcast(ctx context.Context, ms ...*Message) error
	// Run hands to deliver, in arrival order, each message sent to this instance or
	// broadcast, until ctx ends: a batch at a time (a payload's messages, or what
	// waited while the previous batch was delivered), one call at a time; deliver
	// must not keep the slice. Call it once per instance. It calls subscribed each
	// time it starts listening, first and after every reconnect, before the messages
	// that follow.
	Run(ctx context.Context, deliver func([]*Message), subscribed func()) error
	// Flush returns once what was sent to this instance before the call has been
	// handed to deliver, where the relay can know it; a drain calls it after the last
	// acked delivery, before the clients are sent away.
	Flush(ctx context.Context) error
}

// relayVersion starts every relayed payload, so a format change is detected rather
// than misread while old and new instances run side by side (the first design's
// payloads start with 1 and are dropped as malformed).
const relayVersion = 2

// maxRelayHeader bounds a message's header line: an epoch and five decimal numbers.
const maxRelayHeader = epochLen + 6*21

// Why a relay payload was dropped.
var (
	errBadRelay     = errors.New("malformed relay payload")
	errForeignRelay = errors.New("relay payload of another deployment")
)

// encodeRelay writes ms as one payload: "\x02<namespace>\n<sender>\n", then for each
// message a header line "<epoch> <seq> <time> <len user> <len routing key> <len
// body>\n" (epoch may be empty, seq 0 when not recorded) and user, routing key and
// body back to back. Bodies may be binary; nothing is escaped.
func encodeRelay(ns, from string, ms ...*Message) []byte {
	n := 3 + len(ns) + len(from)
	for _, m := range ms {
		n += maxRelayHeader + len(m.UserID) + len(m.RoutingKey) + len(m.Body)
	}
	b := make([]byte, 0, n)
	b = append(b, relayVersion)
	b = append(b, ns...)
	b = append(b, '\n')
	b = append(b, from...)
	b = append(b, '\n')
	for _, m := range ms {
		b = append(b, m.Epoch...)
		for _, x := range []uint64{m.Seq, uint64(m.Time), uint64(len(m.UserID)), uint64(len(m.RoutingKey)), uint64(len(m.Body))} {
			b = append(b, ' ')
			b = strconv.AppendUint(b, x, 10)
		}
		b = append(b, '\n')
		b = append(b, m.UserID...)
		b = append(b, m.RoutingKey...)
		b = append(b, m.Body...)
	}
	return b
}

// decodeRelay reads what encodeRelay wrote, and who sent it; a payload of another
// namespace than ns is refused, and so is one that does not parse to its end.
func decodeRelay(ns string, b []byte) (ms []*Message, from string, err error) {
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
	fromEnd := bytes.IndexByte(b, '\n')
	if fromEnd < 0 {
		return nil, "", errBadRelay
	}
	from, b = string(b[:fromEnd]), b[fromEnd+1:]
	for len(b) > 0 {
		var m *Message
		if m, b, err = decodeRelayMessage(b); err != nil {
			return nil, "", err
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, "", errBadRelay
	}
	return ms, from, nil
}

// decodeRelayMessage reads one message from the start of b and returns the rest.
func decodeRelayMessage(b []byte) (*Message, []byte, error) {
	end := bytes.IndexByte(b[:min(len(b), maxRelayHeader+1)], '\n')
	if end < 0 {
		return nil, nil, errBadRelay
	}
	f := strings.Split(string(b[:end]), " ")
	if len(f) != 6 || !validEpoch(f[0]) {
		return nil, nil, errBadRelay
	}
	var n [5]uint64
	for i, s := range f[1:] {
		var err error
		if n[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, nil, errBadRelay
		}
	}
	if (f[0] == "") != (n[0] == 0) {
		return nil, nil, errBadRelay
	}
	rest := b[end+1:]
	var parts [3][]byte
	for i, l := range n[2:] {
		if l > uint64(len(rest)) {
			return nil, nil, errBadRelay
		}
		parts[i], rest = rest[:l], rest[l:]
	}
	m := &Message{Epoch: f[0], Seq: n[0], Time: int64(n[1]), UserID: string(parts[0]), RoutingKey: string(parts[1]), Body: bytes.Clone(parts[2])}
	return m, rest, nil
}
