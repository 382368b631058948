package app_test

import (
	"bytes"
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
		if withHeader && header != "" && user != header && !bytes.Contains(body, []byte("receiveUserId")) {
			t.Fatalf("header %q present but Target chose %q", header, user)
		}
	})
}
