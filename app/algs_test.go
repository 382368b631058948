package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// writePublicKey writes pub as a PEM file and returns its path and bytes.
func writePublicKey(t *testing.T, pub any) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func keyServer(t *testing.T, keyFile string) *apptest.Server {
	t.Helper()
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"AMQP_URL": apptest.AMQPURL(), "BRIDGE_JWT_PUBLIC_KEY_FILE": keyFile}
	for k, v := range tp.Env {
		env[k] = v
	}
	return apptest.Start(t, env)
}

// TestPublicKeyAlgorithmsArePinned: a server configured with a public key accepts only
// that key's algorithm. The two classic forgeries are tried explicitly: "alg: none",
// and an HS256 token whose HMAC key is the server's own public key (which an attacker
// has), hoping the server uses whatever key it holds with whatever alg the token names.
func TestPublicKeyAlgorithmsArePinned(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name      string
		method    jwt.SigningMethod
		priv, pub any
		other     func(t *testing.T) string // a valid token of the other key kind
	}{
		{"RS256", jwt.SigningMethodRS256, rsaKey, &rsaKey.PublicKey,
			func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, ecKey, claims("u1")) }},
		{"ES256", jwt.SigningMethodES256, ecKey, &ecKey.PublicKey,
			func(t *testing.T) string { return sign(t, jwt.SigningMethodRS256, rsaKey, claims("u1")) }},
	} {
		t.Run(k.name, func(t *testing.T) {
			path, pemBytes := writePublicKey(t, k.pub)
			s := keyServer(t, path)
			cases := []struct {
				name string
				tok  string
				want int
			}{
				{"valid", sign(t, k.method, k.priv, claims("u1")), http.StatusSwitchingProtocols},
				{"alg none", algNone(t, "u1"), http.StatusUnauthorized},
				{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, pemBytes, claims("u1")), http.StatusUnauthorized},
				{"the other key kind", k.other(t), http.StatusUnauthorized},
			}
			for _, tc := range cases {
				if got := dialStatus(t, s.WSURL("/ws?token="+tc.tok), nil); got != tc.want {
					t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
				}
			}
		})
	}
}
