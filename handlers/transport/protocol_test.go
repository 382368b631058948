package transport

import (
	"encoding/json"
	"testing"
)

// TestAppendJSONStringIsEncodingJSON: the fast path writes what json.Marshal writes.
func TestAppendJSONStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "123", "contract", "a.b-c_d:e/f", `q"uote`, `back\slash`, "tab\t", "<b>&", "del\x7f", "ünï", "\xff", "\u2028"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("%q: got %s, want %s", s, got[1:], want)
		}
	}
}
