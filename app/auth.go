package app

import (
	"crypto/elliptic"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/handlers"
)

// minSecretBytes is the shortest HS256 secret accepted: shorter ones can be guessed
// offline from any token a client holds.
const minSecretBytes = 16

// newAuth builds the request authenticator from the configuration, pinning the token
// algorithms to the kind of key configured (no "none", no HS/RS confusion).
func newAuth(cfg *Config) (*handlers.Auth, error) {
	a := &handlers.Auth{
		Dev: cfg.Dev, APIKey: cfg.APIKey, AllowedOrigins: cfg.AllowedOrigins,
		Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer,
	}
	switch {
	case cfg.JWTPublicKeyFile != "" && cfg.JWTSecret != "":
		return nil, fmt.Errorf("BRIDGE_JWT_SECRET and BRIDGE_JWT_PUBLIC_KEY_FILE are both set: set the one your tokens are signed for")
	case cfg.JWTPublicKeyFile != "":
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		if a.Key, a.Methods, err = publicKey(pem); err != nil {
			return nil, fmt.Errorf("BRIDGE_JWT_PUBLIC_KEY_FILE: %w", err)
		}
	case cfg.JWTSecret != "":
		if len(cfg.JWTSecret) < minSecretBytes {
			return nil, fmt.Errorf("BRIDGE_JWT_SECRET: use at least %d bytes", minSecretBytes)
		}
		a.Key, a.Methods = []byte(cfg.JWTSecret), []string{"HS256"}
	}
	return a, nil
}

// publicKey reads an RSA key (RS256) or an ECDSA key (ES256 on P-256, ES384 on P-384,
// ES512 on P-521: each curve has exactly one algorithm) from PEM.
func publicKey(pem []byte) (any, []string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, []string{"RS256"}, nil
	}
	k, err := jwt.ParseECPublicKeyFromPEM(pem)
	if err != nil {
		return nil, nil, fmt.Errorf("not an RSA or ECDSA public key in PEM")
	}
	switch k.Curve {
	case elliptic.P256():
		return k, []string{"ES256"}, nil
	case elliptic.P384():
		return k, []string{"ES384"}, nil
	case elliptic.P521():
		return k, []string{"ES512"}, nil
	}
	return nil, nil, fmt.Errorf("ECDSA key on an unsupported curve %s", k.Curve.Params().Name)
}
