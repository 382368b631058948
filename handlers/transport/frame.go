package transport

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/presence"
)

// WebSocket frames as the server sends them (RFC 6455 §5.2): one final frame per
// message, unmasked (only clients mask), RSV bits clear. Compression is never
// negotiated, and even where it were, a frame with RSV1 clear is a valid uncompressed
// message. Header and payload sit in one buffer, so a frame is always written as one
// piece: see WS.write for why that matters.

// maxFrameHeader is the longest header of an unmasked frame: two bytes and a 64-bit length.
const maxFrameHeader = 10

// Frames of ours whose bytes never change, shared by every connection.
var pingFrame = serverFrame(websocket.PingMessage, nil)

// frameHeaderLen is the header length of an unmasked frame of n payload bytes: the
// length fits in 7 bits up to 125, takes 16 more bits up to 65535, else 64 more.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return maxFrameHeader
}

// putFrameHeader writes into h, of length frameHeaderLen(n), the header of a final,
// unmasked frame of opcode op (gorilla's message types are the opcodes) and n bytes.
func putFrameHeader(h []byte, op, n int) {
	h[0] = 0x80 | byte(op) // FIN
	switch len(h) {
	case 2:
		h[1] = byte(n)
	case 4:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
}

// serverFrame is the complete frame of opcode op carrying payload, in a new buffer.
func serverFrame(op int, payload []byte) []byte {
	h := frameHeaderLen(len(payload))
	b := make([]byte, h+len(payload))
	putFrameHeader(b[:h], op, len(payload))
	copy(b[h:], payload)
	return b
}

// rawFrame is m's WebSocket frame in raw mode: the body verbatim, as text when it is
// UTF-8 and as binary otherwise (a text frame must be UTF-8; browsers fail the
// connection on one that is not).
func rawFrame(m *presence.Message) []byte {
	return m.Encoded(encWSRaw, func(m *presence.Message) []byte {
		op := websocket.TextMessage
		if !utf8.Valid(m.Body) {
			op = websocket.BinaryMessage
		}
		return serverFrame(op, m.Body)
	})
}

// v1Frame is m's bridge.v1 "message" frame, ready to write. One buffer holds header
// and JSON: the JSON is encoded after room for the longest header, and the header is
// put right before it.
func v1Frame(m *presence.Message) []byte {
	return m.Encoded(encWSV1, func(m *presence.Message) []byte {
		b := encodeV1(m, maxFrameHeader)
		n := len(b) - maxFrameHeader
		start := maxFrameHeader - frameHeaderLen(n)
		putFrameHeader(b[start:maxFrameHeader], websocket.TextMessage, n)
		return b[start:len(b):len(b)]
	})
}

// framePayload is the payload of an unmasked frame f, as putFrameHeader wrote it.
func framePayload(f []byte) []byte {
	switch f[1] {
	case 126:
		return f[4:]
	case 127:
		return f[maxFrameHeader:]
	}
	return f[2:]
}
