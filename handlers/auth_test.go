package handlers

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTokenFromPrecedence(t *testing.T) {
	cases := []struct {
		name, authz, target, cookie, want string
	}{
		{"header first", "Bearer h", "/ws?token=q", "c", "h"},
		{"scheme is case-insensitive", "bearer h", "/ws", "", "h"},
		{"query next", "", "/ws?token=q", "c", "q"},
		{"cookie last", "", "/ws", "c", "c"},
		{"another scheme is passed over", "Basic dXNlcjpwYXNz", "/ws?token=q", "", "q"},
		{"empty bearer is passed over", "Bearer  ", "/ws", "c", "c"},
		{"nothing", "", "/ws", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: tokenCookie, Value: tc.cookie})
			}
			if got := TokenFrom(r); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDevIdentify: in dev mode the id comes from the path, else ?user=, and must be a
// usable id.
func TestDevIdentify(t *testing.T) {
	a := &Auth{Dev: true}
	cases := []struct {
		target, path, want string
		status             int
	}{
		{"/ws/yxd/1", "1", "1", 0},
		{"/ws?user=alice", "", "alice", 0},
		{"/ws", "", "", http.StatusUnauthorized},
		{"/ws?user=a%00b", "", "", http.StatusBadRequest},
	}
	for _, tc := range cases {
		user, err := a.Identify(httptest.NewRequest(http.MethodGet, tc.target, nil), tc.path)
		if tc.status == 0 {
			if err != nil || user != tc.want {
				t.Errorf("%s: got %q, %v; want %q", tc.target, user, err, tc.want)
			}
			continue
		}
		if e, ok := err.(*Error); !ok || e.Status != tc.status {
			t.Errorf("%s: got %q, %v; want status %d", tc.target, user, err, tc.status)
		}
	}
}

// TestOversizedToken: a token far larger than any real one is refused before parsing.
func TestOversizedToken(t *testing.T) {
	a := &Auth{Key: []byte("0123456789abcdef0123"), Methods: []string{"HS256"}}
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+string(make([]byte, maxTokenBytes+1)))
	if _, err := a.Identify(r, ""); err == nil {
		t.Fatal("an oversized token was accepted")
	}
}
