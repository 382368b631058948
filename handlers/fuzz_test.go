package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pushbridge/pushbridge/presence"
)

// fuzzSecret keys the fuzzed server. The seed corpus holds tokens signed with it, but
// only expired ones, so no input the fuzzer can make may ever be let in.
const fuzzSecret = "fuzz-secret-0123456789abcdef"

// FuzzTokenFrom: token extraction and verification take any header, query, cookie and
// origin without panicking; garbage is a 401, never a user; a dev-mode id is always a
// usable one; an origin passes only when it is the allowed one.
func FuzzTokenFrom(f *testing.F) {
	prod := &Auth{Key: []byte(fuzzSecret), Methods: []string{"HS256"}, Audience: "aud", Issuer: "iss",
		AllowedOrigins: []string{"https://app.example"}}
	dev := &Auth{Dev: true}
	f.Fuzz(func(t *testing.T, authz, query, cookie, origin string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/ws", RawQuery: query}, Host: "bridge.example"}
		for k, v := range map[string]string{"Authorization": authz, "Cookie": cookie, "Origin": origin} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		if tok := TokenFrom(r); len(tok) > len(authz)+len(query)+len(cookie) {
			t.Fatalf("token %q is longer than everything the request carried", tok)
		}
		user, err := prod.Identify(r, "")
		var e *Error
		if err == nil || !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			t.Fatalf("garbage credentials: got user %q, err %v; want a 401", user, err)
		}
		if user, err := dev.Identify(r, ""); err == nil {
			if cerr := presence.CheckUserID(user); cerr != nil {
				t.Fatalf("dev mode let in the id %q: %v", user, cerr)
			}
		}
		if prod.CheckOrigin(r) && origin != "" && !strings.EqualFold(origin, "https://app.example") {
			t.Fatalf("origin %q passed", origin)
		}
	})
}
