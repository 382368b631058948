package app

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/handlers"
)

// newAuth builds the request authenticator from the configuration, pinning the token
// algorithms to the kind of key configured (no "none", no HS/RS confusion).
func newAuth(cfg *Config) (*handlers.Auth, error) {
	a := &handlers.Auth{Dev: cfg.Dev, APIKey: cfg.APIKey, AllowedOrigins: cfg.AllowedOrigins}
	switch {
	case cfg.JWTPublicKeyFile != "":
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
			a.Key, a.Methods = (*rsa.PublicKey)(k), []string{"RS256"}
		} else if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
			a.Key, a.Methods = (*ecdsa.PublicKey)(k), []string{"ES256"}
		} else {
			return nil, fmt.Errorf("BRIDGE_JWT_PUBLIC_KEY_FILE: not an RSA or ECDSA public key in PEM")
		}
	case cfg.JWTSecret != "":
		if len(cfg.JWTSecret) < 16 {
			return nil, fmt.Errorf("BRIDGE_JWT_SECRET: use at least 16 bytes")
		}
		a.Key, a.Methods = []byte(cfg.JWTSecret), []string{"HS256"}
	}
	return a, nil
}
