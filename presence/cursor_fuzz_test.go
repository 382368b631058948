package presence

import "testing"

// FuzzParseCursor: a cursor from a client is either refused or reads back to the same
// text, so a cursor names one position and nothing else.
func FuzzParseCursor(f *testing.F) {
	f.Add("k2m9q0x1ab-42.p0l3s8c7de-1007")
	f.Add("-0.p0l3s8c7de-1")
	f.Add("-0.-0")
	f.Add("123")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if err != ErrBadCursor {
				t.Fatalf("ParseCursor(%q) failed with %v, want ErrBadCursor", s, err)
			}
			return
		}
		if back := c.String(); back != s {
			t.Fatalf("cursor %q -> %+v -> %q", s, c, back)
		}
	})
}

func TestCursorText(t *testing.T) {
	e := NewEpoch()
	if !validEpoch(e) || len(e) != epochLen || e == NewEpoch() {
		t.Fatalf("epoch %q: not a fresh valid epoch", e)
	}
	c := Cursor{User: Pos{Epoch: e, Seq: 42}, Bcast: Pos{}}
	if got, want := c.String(), e+"-42.-0"; got != want {
		t.Fatalf("cursor = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "5", "a-1.b-2", e + "-01.-0", "-1.-0", e + "-x.-0", e + "-1", e + "-1.-0.", e + "-99999999999999999999999.-0"} {
		if _, err := ParseCursor(bad); err != ErrBadCursor {
			t.Errorf("ParseCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}
