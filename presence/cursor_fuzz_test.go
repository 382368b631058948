package presence

import "testing"

// FuzzParseCursor: a cursor from a client is either refused or a number that formats
// back to a cursor naming the same message.
func FuzzParseCursor(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCursor(s)
		if err != nil {
			if err != ErrBadCursor {
				t.Fatalf("ParseCursor(%q) failed with %v, want ErrBadCursor", s, err)
			}
			return
		}
		for _, c := range []byte(s) {
			if c < '0' || c > '9' {
				t.Fatalf("ParseCursor(%q) accepted a non-digit", s)
			}
		}
		if back, err := ParseCursor(FormatCursor(n)); err != nil || back != n {
			t.Fatalf("cursor %q -> %d -> %q -> %d, %v", s, n, FormatCursor(n), back, err)
		}
	})
}
