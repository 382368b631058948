package app

import (
	"context"
	"crypto/elliptic"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/handlers"
)

// minSecretBytes is the shortest HS256 secret accepted: shorter ones can be guessed
// offline from any token a client holds.
const minSecretBytes = 16

// minAPIKeyBytes is the shortest BRIDGE_API_KEY accepted outside dev mode: it lets its
// holder publish to every user and read who is online, and is tried online as often as
// an attacker likes; 24 random bytes are beyond guessing.
const minAPIKeyBytes = 24

// newAuth builds the request authenticator from the configuration, pinning the token
// algorithms to the kind of key configured (no "none", no HS/RS confusion). A JWKS is
// refreshed in the background until ctx ends.
func newAuth(ctx context.Context, cfg *Config, log *slog.Logger) (*handlers.Auth, error) {
	a := &handlers.Auth{
		Dev: cfg.Dev, APIKey: cfg.APIKey, AllowedOrigins: cfg.AllowedOrigins,
		Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer,
	}
	if !cfg.Dev && cfg.APIKey != "" && len(cfg.APIKey) < minAPIKeyBytes {
		return nil, fmt.Errorf("BRIDGE_API_KEY: use at least %d bytes (it opens publishing to every user), e.g. openssl rand -hex 16", minAPIKeyBytes)
	}
	if set := keySources(cfg); len(set) > 1 {
		return nil, fmt.Errorf("%s are set together: set only the one your tokens are signed for", strings.Join(set, " and "))
	}
	switch {
	case cfg.JWTJWKSURL != "":
		kf, err := jwksKeyFunc(ctx, cfg.JWTJWKSURL, log)
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_JWT_JWKS_URL: %w", err)
		}
		a.KeyFunc, a.Methods = kf, jwksMethods
		warnJWKSUnpinned(cfg, log)
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

// keySources names the token key settings that are set; one at most may be.
func keySources(cfg *Config) []string {
	var set []string
	for _, s := range []struct{ env, v string }{
		{"BRIDGE_JWT_SECRET", cfg.JWTSecret},
		{"BRIDGE_JWT_PUBLIC_KEY_FILE", cfg.JWTPublicKeyFile},
		{"BRIDGE_JWT_JWKS_URL", cfg.JWTJWKSURL},
	} {
		if s.v != "" {
			set = append(set, s.env)
		}
	}
	return set
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

// warnJWKSUnpinned says, loudly, when JWKS tokens are not held to this service: an
// identity provider signs the tokens of all its applications with the same keys, so
// without an audience (and issuer) a token minted for any other application of the same
// provider — another team's, a test tenant's — gets in here as its subject.
func warnJWKSUnpinned(cfg *Config, log *slog.Logger) {
	for _, m := range []struct{ env, v, claim string }{
		{"BRIDGE_JWT_AUDIENCE", cfg.JWTAudience, "aud"},
		{"BRIDGE_JWT_ISSUER", cfg.JWTIssuer, "iss"},
	} {
		if m.v == "" {
			log.Warn("SECURITY: BRIDGE_JWT_JWKS_URL is used without "+m.env+": a token your identity provider signed for any other application is accepted here; set "+m.env+" to the "+m.claim+" of this service's tokens",
				"unset", m.env)
		}
	}
}
