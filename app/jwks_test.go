package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// fakeIdP publishes a JWKS on loopback, as an identity provider does, and counts how
// often it is fetched. Its keys can be swapped (rotation) or the endpoint made to fail.
type fakeIdP struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	failing bool
	fetches atomic.Int32
}

func newFakeIdP(t *testing.T, keys ...map[string]string) *fakeIdP {
	t.Helper()
	f := &fakeIdP{keys: keys}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failing {
			http.Error(w, "provider down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": f.keys})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) url() string { return f.srv.URL + "/.well-known/jwks.json" }

func (f *fakeIdP) set(failing bool, keys ...map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing, f.keys = failing, keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaJWK is the public JWK of k under kid.
func rsaJWK(kid string, k *rsa.PrivateKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

// ecJWK is the public JWK of a P-256 key under kid.
func ecJWK(t *testing.T, kid string, k *ecdsa.PrivateKey) map[string]string {
	t.Helper()
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	pt := pub.Bytes() // 0x04 || X || Y
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(pt[1:33]), "y": b64(pt[33:])}
}

func newRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signKID signs c with method and key, naming kid in the header.
func signKID(t *testing.T, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// jwksServer runs a server verifying client tokens against url, requiring
// testAudience and testIssuer.
func jwksServer(t *testing.T, url string) *apptest.Server {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"AMQP_URL": apptest.AMQPURL(), "BRIDGE_JWT_JWKS_URL": url,
		"BRIDGE_JWT_AUDIENCE": testAudience, "BRIDGE_JWT_ISSUER": testIssuer}
	for k, v := range tp.Env {
		env[k] = v
	}
	return apptest.Start(t, env)
}

// TestJWKSTokens: tokens signed by any key of the provider's set, named by kid, get in;
// the forgeries and bad claims the other key kinds refuse are refused here too, and a
// provider that stops answering leaves the server with the keys it had.
func TestJWKSTokens(t *testing.T) {
	rsaKey := newRSA(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp := newFakeIdP(t, rsaJWK("rsa1", rsaKey), ecJWK(t, "ec1", ecKey))
	s := jwksServer(t, idp.url())
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims("u1"))
	none.Header["kid"] = "rsa1"
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	expired, wrongAud := claims("u1"), claims("u1")
	expired["exp"] = time.Now().Add(-10 * time.Minute).Unix()
	wrongAud["aud"] = "another-service"

	rs256 := signKID(t, jwt.SigningMethodRS256, "rsa1", rsaKey, claims("u1"))
	cases := []struct {
		name string
		tok  string
		want int
	}{
		{"RS256", rs256, http.StatusSwitchingProtocols},
		{"ES256", signKID(t, jwt.SigningMethodES256, "ec1", ecKey, claims("u1")), http.StatusSwitchingProtocols},
		{"alg none", noneTok, http.StatusUnauthorized},
		{"HS256 keyed with the RSA key's PEM", signKID(t, jwt.SigningMethodHS256, "rsa1", pemBytes, claims("u1")), http.StatusUnauthorized},
		{"HS256 keyed with the RSA key's DER", signKID(t, jwt.SigningMethodHS256, "rsa1", der, claims("u1")), http.StatusUnauthorized},
		{"RS256 naming the EC key's kid", signKID(t, jwt.SigningMethodRS256, "ec1", rsaKey, claims("u1")), http.StatusUnauthorized},
		{"another RSA key under the set's kid", signKID(t, jwt.SigningMethodRS256, "rsa1", newRSA(t), claims("u1")), http.StatusUnauthorized},
		{"expired", signKID(t, jwt.SigningMethodRS256, "rsa1", rsaKey, expired), http.StatusUnauthorized},
		{"wrong audience", signKID(t, jwt.SigningMethodRS256, "rsa1", rsaKey, wrongAud), http.StatusUnauthorized},
	}
	for _, tc := range cases {
		if got := dialStatus(t, s.WSURL("/ws?token="+tc.tok), nil); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := httpEntry(http.MethodGet, "/poll?wait=1s", "")(t, s, rs256); got != http.StatusOK {
		t.Errorf("GET /poll with an RS256 token: got %d, want 200", got)
	}

	// A kid the set never gets, asked for while the provider is down: the refetch
	// fails, is logged, and the keys we hold still work.
	idp.set(true)
	before := idp.fetches.Load()
	stranger := signKID(t, jwt.SigningMethodRS256, "never", newRSA(t), claims("u1"))
	if got := dialStatus(t, s.WSURL("/ws?token="+stranger), nil); got != http.StatusUnauthorized {
		t.Errorf("unknown kid: got %d, want 401", got)
	}
	if idp.fetches.Load() == before {
		t.Errorf("an unknown kid did not make the server refetch the key set")
	}
	if log := s.Stderr.String(); !strings.Contains(log, "JWKS refresh failed") {
		t.Errorf("the failed refetch is not in the log:\n%s", log)
	}
	if got := dialStatus(t, s.WSURL("/ws?token="+rs256), nil); got != http.StatusSwitchingProtocols {
		t.Errorf("known kid after a failed refetch: got %d, want 101", got)
	}
}

// TestJWKSRotation: when the provider rotates to a new key, the first token naming it
// makes the server refetch the set, without a restart, and the withdrawn key stops
// working. Refetches for unknown kids are rate-limited: a burst of made-up kids right
// after does not reach the provider.
func TestJWKSRotation(t *testing.T) {
	oldKey, newKey := newRSA(t), newRSA(t)
	idp := newFakeIdP(t, rsaJWK("2024", oldKey))
	s := jwksServer(t, idp.url())
	oldTok := signKID(t, jwt.SigningMethodRS256, "2024", oldKey, claims("u1"))
	if got := dialStatus(t, s.WSURL("/ws?token="+oldTok), nil); got != http.StatusSwitchingProtocols {
		t.Fatalf("token of the first key: got %d, want 101", got)
	}

	idp.set(false, rsaJWK("2025", newKey))
	newTok := signKID(t, jwt.SigningMethodRS256, "2025", newKey, claims("u1"))
	if got := dialStatus(t, s.WSURL("/ws?token="+newTok), nil); got != http.StatusSwitchingProtocols {
		t.Errorf("token of the rotated-in key: got %d, want 101", got)
	}
	if got := dialStatus(t, s.WSURL("/ws?token="+oldTok), nil); got != http.StatusUnauthorized {
		t.Errorf("token of the withdrawn key: got %d, want 401", got)
	}

	fetched := idp.fetches.Load()
	for i := range 5 {
		tok := signKID(t, jwt.SigningMethodRS256, "made-up-"+string(rune('a'+i)), newKey, claims("u1"))
		if got := dialStatus(t, s.WSURL("/ws?token="+tok), nil); got != http.StatusUnauthorized {
			t.Errorf("made-up kid %d: got %d, want 401", i, got)
		}
	}
	if n := idp.fetches.Load() - fetched; n != 0 {
		t.Errorf("made-up kids right after a refetch fetched the key set %d more times, want 0", n)
	}
}

// TestJWKSStartFailures: a JWKS that cannot be used stops the start, with an error
// naming BRIDGE_JWT_JWKS_URL.
func TestJWKSStartFailures(t *testing.T) {
	empty := newFakeIdP(t)
	symmetric := newFakeIdP(t, map[string]string{"kty": "oct", "kid": "s", "k": b64([]byte(testSecret))})
	down := newFakeIdP(t)
	down.set(true)
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unreachable", map[string]string{"BRIDGE_JWT_JWKS_URL": "http://127.0.0.1:1/jwks"}, "connection refused"},
		{"answers 500", map[string]string{"BRIDGE_JWT_JWKS_URL": down.url()}, "500"},
		{"plain http off loopback", map[string]string{"BRIDGE_JWT_JWKS_URL": "http://idp.example.com/jwks"}, "use https"},
		{"not a URL", map[string]string{"BRIDGE_JWT_JWKS_URL": "idp.example.com/jwks"}, "https://"},
		{"no keys", map[string]string{"BRIDGE_JWT_JWKS_URL": empty.url()}, "no RSA, ECDSA or Ed25519 public key"},
		{"only a symmetric key", map[string]string{"BRIDGE_JWT_JWKS_URL": symmetric.url()}, "no RSA, ECDSA or Ed25519 public key"},
		{"and a secret", map[string]string{"BRIDGE_JWT_JWKS_URL": empty.url(), "BRIDGE_JWT_SECRET": testSecret}, "set together"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, _, _ := runCmd(t, tc.env, "serve")
			if err == nil || !strings.Contains(err.Error(), "BRIDGE_JWT_JWKS_URL") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming BRIDGE_JWT_JWKS_URL and containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
		})
	}
}

// TestGentokenRefusesJWKS: the provider holds the private key, so there is nothing to
// sign with.
func TestGentokenRefusesJWKS(t *testing.T) {
	err, out, _ := runCmd(t, map[string]string{"BRIDGE_JWT_JWKS_URL": "https://idp.test/jwks"}, "gentoken", "-user", "1")
	if err == nil || !strings.Contains(err.Error(), "cannot sign") || out != "" {
		t.Errorf("got %v and %q, want an error saying it cannot sign", err, out)
	}
}
