package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pushbridge/pushbridge/presence"
)

// HeaderUserID is the AMQP header naming the recipient when the body does not (and, on
// what clients send, the sender).
const HeaderUserID = "x-user-id"

// sniffBytes is how far into a body we look for the "{" that makes it a JSON object.
const sniffBytes = 64

var errNoTarget = errors.New("body is not a JSON object and there is no x-user-id header, so the recipient is unknown")

// Target decodes a delivery's recipient: the JSON body's receiveUserId (string or
// number), else header x-user-id. "" means broadcast. A body that is not a JSON object
// can only be delivered with the header; so can a malformed one, whose bytes are then
// passed on as they are.
func Target(body []byte, headers map[string]any) (string, error) {
	if !looksLikeObject(body) {
		hdr, err := headerTarget(headers)
		if err != nil {
			return "", err
		}
		if hdr == "" {
			return "", errNoTarget
		}
		return checkUserID(hdr)
	}
	id, bodyErr := bodyTarget(body)
	if bodyErr == nil && id != "" {
		return checkUserID(id)
	}
	hdr, err := headerTarget(headers)
	if err != nil {
		return "", err
	}
	if bodyErr != nil && hdr == "" {
		return "", bodyErr
	}
	if hdr == "" {
		return "", nil
	}
	return checkUserID(hdr)
}

func looksLikeObject(body []byte) bool {
	return strings.HasPrefix(strings.TrimLeft(string(body[:min(len(body), sniffBytes)]), " \t\r\n"), "{")
}

// bodyTarget reads receiveUserId from a JSON object body; "" when absent or null.
func bodyTarget(body []byte) (string, error) {
	var env struct {
		ReceiveUserID json.RawMessage `json:"receiveUserId"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return "", fmt.Errorf("malformed JSON body: %w", err)
	}
	raw := env.ReceiveUserID
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("receiveUserId must be a string or a number, not %s", raw)
}

// headerTarget reads header x-user-id; "" when absent or empty.
func headerTarget(headers map[string]any) (string, error) {
	v, ok := headers[HeaderUserID]
	if !ok {
		return "", nil
	}
	id, err := headerString(v)
	if err != nil {
		return "", fmt.Errorf("header %s: %w", HeaderUserID, err)
	}
	return id, nil
}

func headerString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

// checkUserID passes a usable id through; "" stays "", a broadcast.
func checkUserID(id string) (string, error) {
	if id == "" {
		return "", nil
	}
	if err := presence.CheckUserID(id); err != nil {
		return "", err
	}
	return id, nil
}
