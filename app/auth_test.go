package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

// tableUser is the user whose tokens the table test presents.
const tableUser = "u1"

// Who may use an entry point.
const (
	byToken  = "client token" // a browser with a JWT
	byAPIKey = "API key"      // a backend or an operator
)

// entryPoint is one way into the server. Adding a route to the auth table is one row.
type entryPoint struct {
	name string
	auth string // byToken or byAPIKey
	ok   int    // the status (or 101) of a valid request
	// call makes the request with cred as the bearer credential ("" for none) and
	// returns the HTTP status; 101 means a WebSocket was upgraded.
	call func(t *testing.T, s *apptest.Server, cred string) int
}

var entryPoints = []entryPoint{
	{"ws", byToken, http.StatusSwitchingProtocols, wsEntry("/ws")},
	{"ws alias", byToken, http.StatusSwitchingProtocols, wsEntry("/ws/yxd/" + tableUser)},
	{"sse", byToken, http.StatusOK, httpEntry(http.MethodGet, "/sse", "")},
	{"poll", byToken, http.StatusOK, httpEntry(http.MethodGet, "/poll?wait=1s", "")}, // no cursor: answers at once
	{"send", byToken, http.StatusAccepted, httpEntry(http.MethodPost, "/api/send", `{"routingKey":"chat","data":"hi"}`)},
	{"publish", byAPIKey, http.StatusAccepted, httpEntry(http.MethodPost, "/api/publish", `{"routingKey":"contract","userId":"nobody","data":{"n":1}}`)},
	{"instances", byAPIKey, http.StatusOK, httpEntry(http.MethodGet, "/api/instances", "")},
	{"presence", byAPIKey, http.StatusOK, httpEntry(http.MethodGet, "/api/presence", "")},
	{"user presence", byAPIKey, http.StatusOK, httpEntry(http.MethodGet, "/api/presence/"+tableUser, "")},
}

func wsEntry(path string) func(*testing.T, *apptest.Server, string) int {
	return func(t *testing.T, s *apptest.Server, cred string) int {
		return dialStatus(t, s.WSURL(path), bearer(cred))
	}
}

// httpEntry returns as soon as the response's status is known, so a streaming route
// (SSE) can be a row too.
func httpEntry(method, path, body string) func(*testing.T, *apptest.Server, string) int {
	return func(t *testing.T, s *apptest.Server, cred string) int {
		t.Helper()
		req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = bearer(cred)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// credential is one kind of credential a request may carry.
type credential struct {
	name string
	make func(t *testing.T) string
}

var credentials = []credential{
	{"no token", func(*testing.T) string { return "" }},
	{"malformed token", func(*testing.T) string { return "not-a.jwt" }},
	{"wrong signature", func(t *testing.T) string {
		return sign(t, jwt.SigningMethodHS256, []byte(otherSecret), claims(tableUser))
	}},
	{"alg none", func(t *testing.T) string { return algNone(t, tableUser) }},
	{"expired", func(t *testing.T) string {
		return hs256(t, tableUser, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Minute).Unix() })
	}},
	{"no exp", func(t *testing.T) string { return hs256(t, tableUser, func(c jwt.MapClaims) { delete(c, "exp") }) }},
	{"wrong audience", func(t *testing.T) string {
		return hs256(t, tableUser, func(c jwt.MapClaims) { c["aud"] = "another-service" })
	}},
	{"wrong issuer", func(t *testing.T) string {
		return hs256(t, tableUser, func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })
	}},
	{"valid", nil}, // the route's own valid credential: a client token or the API key
	{"valid client token", func(t *testing.T) string { return hs256(t, tableUser, nil) }},
}

// want is the answer entry point e gives to credential c: only the route's own kind of
// valid credential gets in; a client token never opens a key-guarded route.
func (e entryPoint) want(c credential) int {
	switch {
	case c.name == "valid", c.name == "valid client token" && e.auth == byToken:
		return e.ok
	}
	return http.StatusUnauthorized
}

// authServer runs a server with HS256 client tokens that must carry testAudience and
// testIssuer, and an API key. Clients' sends are broadcast, so /api/send needs no
// backend queue to answer 202.
func authServer(t *testing.T, extra map[string]string) *apptest.Server {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{
		"AMQP_URL": apptest.AMQPURL(), "BRIDGE_JWT_SECRET": testSecret, "BRIDGE_API_KEY": testAPIKey,
		"BRIDGE_JWT_AUDIENCE": testAudience, "BRIDGE_JWT_ISSUER": testIssuer, "BRIDGE_INBOUND": "broadcast",
	}
	for _, m := range []map[string]string{tp.Env, extra} {
		for k, v := range m {
			env[k] = v
		}
	}
	return apptest.Start(t, env)
}

func TestAuthTable(t *testing.T) {
	s := authServer(t, nil)
	for _, e := range entryPoints {
		for _, c := range credentials {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				cred := testAPIKey
				if c.make != nil {
					cred = c.make(t)
				} else if e.auth == byToken {
					cred = hs256(t, tableUser, nil)
				}
				if got, want := e.call(t, s, cred), e.want(c); got != want {
					t.Errorf("got status %d, want %d", got, want)
				}
			})
		}
	}
}

// TestTokenSources: a browser cannot set headers on a WebSocket, so the token also
// comes as ?token= or the bridge_token cookie; the user is the token's sub.
func TestTokenSources(t *testing.T) {
	s := authServer(t, nil)
	tok := hs256(t, "u7", nil)
	cases := []struct {
		name  string
		query string
		h     http.Header
	}{
		{"header", "", bearer(tok)},
		{"query", "?token=" + tok, nil},
		{"cookie", "", http.Header{"Cookie": {"bridge_token=" + tok}}},
		{"query beside a proxy's basic auth", "?token=" + tok, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := apptest.DialWS(t, s.WSURL("/ws"+tc.query), transport.SubprotocolV1, tc.h)
			var welcome struct{ Type, User string }
			if err := json.Unmarshal(c.Next(t, 5*time.Second).Data, &welcome); err != nil {
				t.Fatal(err)
			}
			if welcome.Type != "welcome" || welcome.User != "u7" {
				t.Errorf("got %+v, want a welcome for u7", welcome)
			}
		})
	}
}

// TestCompatPathMustMatchSub: on /ws/yxd/:userId the path names the user, and with auth
// on it must be the token's own user.
func TestCompatPathMustMatchSub(t *testing.T) {
	s := authServer(t, nil)
	tok := hs256(t, "7", nil)
	if got := dialStatus(t, s.WSURL("/ws/yxd/8?token="+tok), nil); got != http.StatusForbidden {
		t.Errorf("user 7's token on /ws/yxd/8: got %d, want 403", got)
	}
	if got := dialStatus(t, s.WSURL("/ws/yxd/7?token="+tok), nil); got != http.StatusSwitchingProtocols {
		t.Errorf("user 7's token on /ws/yxd/7: got %d, want 101", got)
	}
}

// TestErrorBodyNamesTheProblem: a refused client learns why, in the JSON error body.
func TestErrorBodyNamesTheProblem(t *testing.T) {
	s := authServer(t, nil)
	resp, err := http.Get(s.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "no token") {
		t.Errorf("got %d %s, want 401 saying there is no token", resp.StatusCode, body)
	}
}
