package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pushbridge/pushbridge/presence"
)

// HeaderUserID is the AMQP header naming the recipient (and, on what clients send, the
// sender). It wins over the body's receiveUserId.
const HeaderUserID = "x-user-id"

var errNoTarget = errors.New("body is not a JSON object and there is no x-user-id header, so the recipient is unknown")

// Target decodes a delivery's recipient: header x-user-id, else the JSON body's
// receiveUserId (string or number). "" means broadcast. A body that is not a JSON
// object can only be delivered with the header.
func Target(body []byte, headers map[string]any) (string, error) {
	if v, ok := headers[HeaderUserID]; ok {
		id, err := headerString(v)
		if err != nil {
			return "", fmt.Errorf("header %s: %w", HeaderUserID, err)
		}
		if id != "" {
			return checkUserID(id)
		}
	}
	var env struct {
		ReceiveUserID json.RawMessage `json:"receiveUserId"`
	}
	trimmed := strings.TrimLeft(string(body[:min(len(body), 64)]), " \t\r\n")
	if !strings.HasPrefix(trimmed, "{") {
		return "", errNoTarget
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
		return checkUserID(s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return checkUserID(n.String())
	}
	return "", fmt.Errorf("receiveUserId must be a string or a number, not %s", raw)
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
