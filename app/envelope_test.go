package app

import (
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/presence"
)

func TestTarget(t *testing.T) {
	long := strings.Repeat("a", presence.MaxUserIDLen+1)
	for _, tc := range []struct {
		name    string
		body    string
		headers map[string]any
		want    string
		wantErr string // a fragment of the error; "" means no error
	}{
		{"body string id", `{"receiveUserId":"1","routingKey":"contract"}`, nil, "1", ""},
		{"body number id", `{"receiveUserId":42}`, nil, "42", ""},
		{"body big number id keeps its digits", `{"receiveUserId":12345678901234567890}`, nil, "12345678901234567890", ""},
		{"body null id is a broadcast", `{"receiveUserId":null,"x":1}`, nil, "", ""},
		{"body without id is a broadcast", `{"routingKey":"contract"}`, nil, "", ""},
		{"body empty id is a broadcast", `{"receiveUserId":""}`, nil, "", ""},
		{"leading whitespace", " \n\t{\"receiveUserId\":\"7\"}", nil, "7", ""},
		{"body object id", `{"receiveUserId":{"id":1}}`, nil, "", "must be a string or a number"},
		{"body array id", `{"receiveUserId":["1"]}`, nil, "", "must be a string or a number"},
		{"body bool id", `{"receiveUserId":true}`, nil, "", "must be a string or a number"},
		{"malformed JSON", `{"receiveUserId":"1"`, nil, "", "malformed JSON"},
		{"non-JSON without header", `hello`, nil, "", "no x-user-id header"},
		{"JSON array without header", `[1,2]`, nil, "", "no x-user-id header"},
		{"JSON string without header", `"hi"`, nil, "", "no x-user-id header"},
		{"non-JSON with empty header", `hello`, map[string]any{"x-user-id": ""}, "", "no x-user-id header"},

		{"header string", `hello`, map[string]any{"x-user-id": "9"}, "9", ""},
		{"header bytes", `hello`, map[string]any{"x-user-id": []byte("9")}, "9", ""},
		{"header int32", `hello`, map[string]any{"x-user-id": int32(9)}, "9", ""},
		{"header int64", `hello`, map[string]any{"x-user-id": int64(-3)}, "-3", ""},
		{"header float", `hello`, map[string]any{"x-user-id": 1.5}, "", "want a string"},
		{"header table", `hello`, map[string]any{"x-user-id": map[string]any{"a": 1}}, "", "want a string"},
		{"header with a JSON body without id", `{"text":"hi"}`, map[string]any{"x-user-id": "9"}, "9", ""},
		{"body id wins over header", `{"receiveUserId":"1"}`, map[string]any{"x-user-id": "9"}, "1", ""},
		{"header names the recipient of a malformed body", `{"oops"`, map[string]any{"x-user-id": "9"}, "9", ""},
		{"unusable header with a body id", `{"receiveUserId":"1"}`, map[string]any{"x-user-id": 1.5}, "1", ""},
		{"other headers ignored", `{"a":1}`, map[string]any{"x-other": "9"}, "", ""},

		{"id at the length limit", `{"receiveUserId":"` + long[1:] + `"}`, nil, long[1:], ""},
		{"body id too long", `{"receiveUserId":"` + long + `"}`, nil, "", "longer than"},
		{"header id too long", `hello`, map[string]any{"x-user-id": long}, "", "longer than"},
		{"control character", `{"receiveUserId":"a\nb"}`, nil, "", "non-printing"},
		{"non-UTF-8 header", `hello`, map[string]any{"x-user-id": []byte{0xff, 0xfe}}, "", "not UTF-8"},
		{"unicode id", `{"receiveUserId":"用户"}`, nil, "用户", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Target([]byte(tc.body), tc.headers)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Target: unexpected error %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Target = %q, want an error containing %q", got, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Target error %q, want one containing %q", err, tc.wantErr)
			case got != tc.want:
				t.Fatalf("Target = %q, want %q", got, tc.want)
			}
		})
	}
}
