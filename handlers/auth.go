package handlers

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/presence"
)

// tokenCookie is the cookie a token may come in, for pages on the same site.
const tokenCookie = "bridge_token"

// jwtLeeway absorbs clock skew between the token issuer and us.
const jwtLeeway = 30 * time.Second

// maxTokenBytes is far above any real token (an RS256 token with a few claims is under
// 1 KiB) and stops us from base64-decoding and parsing whatever a client piles up.
const maxTokenBytes = 8 << 10

// Auth decides who a request is and whether it may come in.
type Auth struct {
	Dev            bool        // ids from the path or ?user=, no token needed
	Key            any         // []byte for HS256, or an RSA/ECDSA public key
	KeyFunc        jwt.Keyfunc // the key a token names by kid, from a JWKS; when set, Key is unused
	Methods        []string    // accepted alg values, pinned to the key's kind
	Audience       string      // required aud claim; empty: not checked
	Issuer         string      // required iss claim; empty: not checked
	APIKey         string      // bearer key of /api/publish and inspection; empty in dev: open
	AllowedOrigins []string    // "*" for any; empty: same origin (any in dev)
}

var (
	errNoToken  = errors.New("no token: send Authorization: Bearer <jwt>, ?token=<jwt> or the bridge_token cookie")
	errBadToken = errors.New("invalid token")
)

// Admit decides whether a client request of any transport may come in, and as whom:
// the Origin first (a foreign page is refused whatever credentials the browser
// attaches, which is what stops cross-site WebSocket hijacking with a cookie), then the
// identity. pathUser is the id the compatibility path names ("" on other routes).
func (a *Auth) Admit(r *http.Request, pathUser string) (string, error) {
	if !a.CheckOrigin(r) {
		return "", errOrigin
	}
	return a.Identify(r, pathUser)
}

// Identify returns the user of a client request. pathUser is the id the compatibility
// path names ("" on other routes).
func (a *Auth) Identify(r *http.Request, pathUser string) (string, error) {
	if a.Dev {
		user := pathUser
		if user == "" {
			user = r.URL.Query().Get("user")
		}
		if user == "" {
			return "", &Error{Status: http.StatusUnauthorized, Msg: "dev mode: name the user with ?user=ID"}
		}
		if err := presence.CheckUserID(user); err != nil {
			return "", &Error{Status: http.StatusBadRequest, Msg: err.Error()}
		}
		return user, nil
	}
	raw := TokenFrom(r)
	if raw == "" {
		return "", &Error{Status: http.StatusUnauthorized, Msg: errNoToken.Error()}
	}
	sub, err := a.verify(raw)
	if err != nil {
		return "", &Error{Status: http.StatusUnauthorized, Msg: err.Error()}
	}
	if pathUser != "" && pathUser != sub {
		return "", &Error{Status: http.StatusForbidden, Msg: "the path's user id is not the token's subject"}
	}
	return sub, nil
}

// verify checks a token's signature with the configured key (or the JWKS key its kid
// names), accepting only the configured algorithms (so neither "none" nor an HS256
// token keyed with our public key gets in), and its exp, aud and iss; it returns the sub.
func (a *Auth) verify(raw string) (string, error) {
	if len(raw) > maxTokenBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", errBadToken, maxTokenBytes)
	}
	keyFunc := a.KeyFunc
	if keyFunc == nil && a.Key != nil {
		keyFunc = func(*jwt.Token) (any, error) { return a.Key, nil }
	}
	if keyFunc == nil || len(a.Methods) == 0 {
		return "", fmt.Errorf("%w: no token key is configured", errBadToken)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(a.Methods), jwt.WithExpirationRequired(), jwt.WithLeeway(jwtLeeway)}
	if a.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.Audience))
	}
	if a.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.Issuer))
	}
	// WithValidMethods is checked before keyFunc runs: a JWKS lookup never sees an
	// algorithm we do not accept.
	tok, err := jwt.Parse(raw, keyFunc, opts...)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBadToken, err)
	}
	sub, err := tok.Claims.GetSubject()
	if err != nil || sub == "" {
		return "", fmt.Errorf("%w: no sub claim", errBadToken)
	}
	if err := presence.CheckUserID(sub); err != nil {
		return "", fmt.Errorf("%w: sub: %w", errBadToken, err)
	}
	return sub, nil
}

// TokenFrom finds a bearer token: Authorization header, then ?token=, then the cookie.
// Browsers cannot set headers on WebSocket or EventSource, hence the other two. An
// Authorization header of another scheme (a proxy's Basic auth) is not ours and is
// passed over.
func TokenFrom(r *http.Request) string {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok
		}
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return c.Value
	}
	return ""
}

// CheckOrigin allows a browser request from an allowed origin. Requests without an
// Origin header (servers, curl) are not cross-site and pass.
func (a *Auth) CheckOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	// Scheme and host are case-insensitive, and an operator may type them either way.
	if slices.ContainsFunc(a.AllowedOrigins, func(o string) bool { return o == "*" || strings.EqualFold(o, origin) }) {
		return true
	}
	if len(a.AllowedOrigins) == 0 {
		if a.Dev {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host) && strings.EqualFold(u.Scheme, requestScheme(r))
	}
	return false
}

// requestScheme is the scheme the browser used to reach us: https when we terminate
// TLS, else what the proxy in front says it terminated (X-Forwarded-Proto, which Fly.io
// and Cloud Run set; a page cannot set it on a WebSocket, an EventSource or a simple
// request), else http. Comparing it keeps a page served over plain http — one a
// network attacker can write — from being "the same origin" as the https site.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); p != "" {
		return strings.ToLower(strings.TrimSpace(p))
	}
	return "http"
}

// wildcardOnly says whether origin is allowed only by a "*" in AllowedOrigins, not by
// its name. (A same-origin request needs no CORS headers at all.)
func (a *Auth) wildcardOnly(origin string) bool {
	return slices.Contains(a.AllowedOrigins, "*") &&
		!slices.ContainsFunc(a.AllowedOrigins, func(o string) bool { return strings.EqualFold(o, origin) })
}

// RequireAPIKey guards backend and admin routes with Authorization: Bearer <api key>.
func (a *Auth) RequireAPIKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.APIKey == "" {
			if a.Dev {
				return next(c)
			}
			return &Error{Status: http.StatusForbidden, Msg: "BRIDGE_API_KEY is not set, so this route is closed"}
		}
		h := c.Request().Header.Get("Authorization")
		scheme, key, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(a.APIKey)) != 1 {
			return &Error{Status: http.StatusUnauthorized, Msg: "send Authorization: Bearer <BRIDGE_API_KEY>"}
		}
		return next(c)
	}
}
