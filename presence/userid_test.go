package presence

import (
	"strings"
	"testing"
)

func TestCheckUserID(t *testing.T) {
	for _, id := range []string{"1", "alice@example.com", "user 7", `a"b\c`, "Zoë", "日本"} {
		if err := CheckUserID(id); err != nil {
			t.Errorf("CheckUserID(%q) = %v, want ok", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("a", MaxUserIDLen+1), "a\x00b", "a\nb", "\xff", "a\u200bb", "\u202e"} {
		if err := CheckUserID(id); err == nil {
			t.Errorf("CheckUserID(%q) = nil, want an error", id)
		}
	}
}
