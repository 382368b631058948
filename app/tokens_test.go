package app_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Test credentials. The secrets are at least 16 bytes, as the server demands.
const (
	testSecret   = "test-secret-0123456789abcdef"
	otherSecret  = "other-secret-0123456789abcdef"
	testAudience = "pushbridge-test"
	testIssuer   = "https://issuer.test"
	testAPIKey   = "test-api-key-0123456789abcdef"
)

// claims are a valid client token's claims for user.
func claims(user string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": user, "aud": testAudience, "iss": testIssuer,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// sign signs c with method and key, failing the test on error.
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// hs256 is a token for user signed with testSecret, with changes applied to its claims.
func hs256(t testing.TB, user string, change func(jwt.MapClaims)) string {
	t.Helper()
	c := claims(user)
	if change != nil {
		change(c)
	}
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

// algNone is an unsigned token for user: what an attacker forges without any key.
func algNone(t testing.TB, user string) string {
	t.Helper()
	return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(user))
}

// bearer is an Authorization header carrying cred ("" for none).
func bearer(cred string) http.Header {
	h := http.Header{}
	if cred != "" {
		h.Set("Authorization", "Bearer "+cred)
	}
	return h
}

// dialStatus opens a WebSocket and reports the handshake's HTTP status: 101 when it was
// upgraded (the connection is then closed), else the refusal's status.
func dialStatus(t testing.TB, url string, h http.Header) int {
	t.Helper()
	return dialResponse(t, url, h).StatusCode
}

// dialResponse opens a WebSocket and returns the handshake's response; an upgraded
// connection is closed at once.
func dialResponse(t testing.TB, url string, h http.Header) *http.Response {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial(url, h)
	if err == nil {
		conn.Close()
		return resp
	}
	if resp == nil || !errors.Is(err, websocket.ErrBadHandshake) {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	return resp
}

// closeCode waits until c ends and returns the close code the server sent.
func closeCode(t testing.TB, c *apptest.WSClient, timeout time.Duration) int {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.Frames:
			if ok {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(c.Err, &ce) {
				t.Fatalf("connection ended without a close frame: %v", c.Err)
			}
			return ce.Code
		case <-deadline:
			t.Fatalf("connection still open after %s", timeout)
		}
	}
}
