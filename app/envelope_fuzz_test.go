package app_test

import (
	"encoding/json"
	"testing"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/presence"
)

// FuzzTarget: any body and x-user-id header decode to a usable recipient, a broadcast,
// or an error, never a panic; the header, when usable, names the recipient unless the
// body's receiveUserId does.
func FuzzTarget(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, header string, withHeader bool) {
		var headers map[string]any
		if withHeader {
			headers = map[string]any{app.HeaderUserID: header}
		}
		user, err := app.Target(body, headers)
		if err != nil {
			return
		}
		if user != "" {
			if cerr := presence.CheckUserID(user); cerr != nil {
				t.Fatalf("Target(%q, %q) = %q, not a usable id: %v", body, header, user, cerr)
			}
		}
		if withHeader && header != "" && user != header && !namesRecipient(body) {
			t.Fatalf("header %q present but Target chose %q", header, user)
		}
	})
}

// namesRecipient says whether body is a JSON object with a non-null receiveUserId, as
// encoding/json reads it: the key matched without regard to case and after unescaping
// ("ReceiveUserID", "receiveUserI\u0064"), the last of duplicates winning.
func namesRecipient(body []byte) bool {
	var env struct {
		R json.RawMessage `json:"receiveUserId"`
	}
	return json.Unmarshal(body, &env) == nil && len(env.R) > 0 && string(env.R) != "null"
}
