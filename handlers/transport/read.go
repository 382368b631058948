package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Client frames are read here, not by gorilla (RFC 6455 §5). gorilla's ReadMessage
// answers pongs and swallows continuation frames inside itself: a client could keep
// one call spinning on millions of empty continuations or unsolicited pongs, never
// returning to us to be charged, and keep a fragmented message open for ever; and it
// does not check that a text message is UTF-8. We already write every frame ourselves
// (WS.write); reading them ourselves lets every frame — data, continuation, ping, pong —
// be charged to the connection's budget before anything is done with it. gorilla still
// does the handshake and writes close frames.

// maxFragments is the most frames one message may come in. Browsers send a message in
// one frame; client libraries that stream send a few; more is a trickle meant to keep
// a message (and its buffer) open.
const maxFragments = 64

// maxClientHeader is the longest header of a client frame: two bytes, a 64-bit length
// and the 4-byte mask.
const maxClientHeader = 14

// Opcodes (RFC 6455 §5.2); gorilla's message types are the same numbers.
const (
	opContinuation = 0
	opText         = websocket.TextMessage
	opBinary       = websocket.BinaryMessage
	opClose        = websocket.CloseMessage
	opPing         = websocket.PingMessage
	opPong         = websocket.PongMessage
)

// closeError is a frame the client must not have sent: the connection is closed with
// code and reason.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("close %d: %s", e.code, e.reason) }

func protocolError(reason string) error {
	return &closeError{code: websocket.CloseProtocolError, reason: reason}
}

// errClientClosed: the client sent its close frame.
var errClientClosed = errors.New("closed by the client")

// frameHeader is one frame's header, as read.
type frameHeader struct {
	op     int
	fin    bool
	length int64
	mask   [4]byte
}

// readHeader reads a client frame's header from r into scratch and checks what
// can be checked from it alone. A frame longer than limit is refused (1009) before a
// byte of it is read.
func readHeader(r io.Reader, scratch *[maxClientHeader]byte, limit int64) (frameHeader, error) {
	b := scratch[:2]
	if _, err := io.ReadFull(r, b); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{op: int(b[0] & 0x0f), fin: b[0]&0x80 != 0}
	masked, n := b[1]&0x80 != 0, int64(b[1]&0x7f)
	switch {
	case b[0]&0x70 != 0:
		return h, protocolError("reserved bits set: no extension was negotiated")
	case !masked:
		return h, protocolError("client frames must be masked")
	}
	ext := 0
	switch n {
	case 126:
		ext = 2
	case 127:
		ext = 8
	}
	rest := scratch[2 : 2+ext+4]
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, err
	}
	switch ext {
	case 2:
		n = int64(binary.BigEndian.Uint16(rest))
	case 8:
		u := binary.BigEndian.Uint64(rest)
		if u > 1<<62 {
			return h, protocolError("frame length out of range")
		}
		n = int64(u)
	}
	copy(h.mask[:], rest[ext:])
	h.length = n
	switch h.op {
	case opClose, opPing, opPong:
		if !h.fin || n > 125 {
			return h, protocolError("control frames are final and at most 125 bytes")
		}
	case opContinuation, opText, opBinary:
		if n > limit {
			return h, &closeError{code: websocket.CloseMessageTooBig, reason: "message too big"}
		}
	default:
		return h, protocolError("unknown opcode")
	}
	return h, nil
}

// payloadChunk is how much of a payload is read at a time: a buffer grows as the bytes
// arrive, not to the length a header announces.
const payloadChunk = 4096

// readPayload reads h's payload from r, unmasked, appended to buf.
func readPayload(r io.Reader, h frameHeader, buf []byte) ([]byte, error) {
	start := len(buf)
	for left := int(h.length); left > 0; {
		n := min(left, payloadChunk)
		buf = slices.Grow(buf, n)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+n])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
		left -= got
	}
	for i := range buf[start:] {
		buf[start+i] ^= h.mask[i&3]
	}
	return buf, nil
}

// message is the data message a client is sending, perhaps in fragments.
type message struct {
	op    int    // opText or opBinary; 0: none in progress
	data  []byte // its payload so far
	frags int
}

// begin checks that a data or continuation frame with header h may come now.
func (m *message) begin(h frameHeader, limit int64) error {
	switch {
	case h.op == opContinuation && m.op == 0:
		return protocolError("continuation frame without a message")
	case h.op != opContinuation && m.op != 0:
		return protocolError("new message before the last one was finished")
	case h.op != opContinuation:
		m.op = h.op
	}
	m.frags++
	if m.frags > maxFragments {
		return &closeError{code: websocket.CloseMessageTooBig, reason: "message in too many fragments"}
	}
	if int64(len(m.data))+h.length > limit {
		return &closeError{code: websocket.CloseMessageTooBig, reason: "message too big"}
	}
	return nil
}

// end is called once a frame's payload is in m.data: done when the message is whole.
func (m *message) end(h frameHeader) (done bool, err error) {
	if !h.fin {
		return false, nil
	}
	if m.op == opText && !utf8.Valid(m.data) {
		return false, &closeError{code: websocket.CloseInvalidFramePayloadData, reason: "text message is not UTF-8"}
	}
	return true, nil
}

// take hands over the whole message and starts afresh.
func (m *message) take() (op int, data []byte) {
	op, data = m.op, m.data
	*m = message{}
	return op, data
}

// closeCodeOf checks a close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a code
// a peer may send and a UTF-8 reason.
func closeCodeOf(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return protocolError("close frame with a 1-byte payload")
	}
	code := int(binary.BigEndian.Uint16(p))
	switch {
	case code < 1000, code >= 5000,
		code >= 1004 && code <= 1006, code >= 1015 && code < 3000:
		return protocolError("close code not allowed on the wire")
	case !utf8.Valid(p[2:]):
		return &closeError{code: websocket.CloseInvalidFramePayloadData, reason: "close reason is not UTF-8"}
	}
	return nil
}
