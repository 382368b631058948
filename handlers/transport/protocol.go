package transport

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/presence"
)

// The wire formats a message is cached in (see presence.Message.Encoded): each is
// built once per message and shared by every connection that sends it.
const (
	encWSRaw  presence.Encoding = iota // raw-mode WebSocket frame
	encWSV1                            // bridge.v1 WebSocket frame; its payload is the bridge.v1 JSON
	encSSERaw                          // SSE event, data the body verbatim
	encSSEV1                           // SSE event, data the bridge.v1 JSON
	encodings
)

// A message has room for every format above.
const _ = uint(presence.Encodings - encodings)

// V1JSON is the bridge.v1 "message" frame of m as JSON, shared by every transport.
func V1JSON(m *presence.Message) []byte { return framePayload(v1Frame(m)) }

// encodeV1 writes {"type":"message","id":…,"routingKey":…,"data":…} by hand rather than
// with json.Marshal, which would compact a JSON body: the data is the body's own bytes,
// so every transport carries the same bytes.
// The JSON starts after skip unused bytes.
func encodeV1(m *presence.Message, skip int) []byte {
	data := DataJSON(m.Body)
	b := make([]byte, skip, skip+64+len(m.ID)+len(m.RoutingKey)+len(data))
	b = append(b, `{"type":"message"`...)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, m.ID)
	}
	b = append(b, `,"routingKey":`...)
	b = appendJSONString(b, m.RoutingKey)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
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
