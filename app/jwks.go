package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKS fetching. The values are keyfunc's own defaults except the timeout, which
// keyfunc leaves at a minute: a start that waits that long on an identity provider
// looks hung.
const (
	// jwksFetchTimeout bounds every fetch: the one at start, the hourly refresh and
	// the refetch for an unknown kid (which a client's request waits on).
	jwksFetchTimeout = 10 * time.Second
	// jwksRefreshInterval is how often the key set is fetched again in the background,
	// so a key the provider withdrew stops being accepted within this time.
	jwksRefreshInterval = time.Hour
	// jwksUnknownKIDEvery spaces the refetches caused by a token naming a kid we do not
	// hold: a rotated-in key is picked up at once, but clients sending made-up kids
	// cannot make us hammer the provider. A token refused by the limit is answered 401
	// at once, not held.
	jwksUnknownKIDEvery = 5 * time.Minute
)

// jwksMethods are the algorithms accepted with a JWKS: asymmetric only. An HS* token
// would be checked against a public key anyone can download, and "none" against
// nothing; golang-jwt refuses both before looking a key up.
var jwksMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// jwksKeyFunc fetches the key set at url once, failing if it cannot be had or holds no
// public key we can verify with, then keeps it fresh until ctx ends. A failed refresh
// keeps the keys we have, and is logged.
func jwksKeyFunc(ctx context.Context, url string, log *slog.Logger) (jwt.Keyfunc, error) {
	noFirstErr := false // the fetch at start must succeed
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:                    &http.Client{Timeout: jwksFetchTimeout},
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: &noFirstErr,
		// The limiter's wait is capped at this, so a client whose unknown kid falls
		// inside jwksUnknownKIDEvery of the last refetch is refused at once; it also
		// bounds the refetch itself.
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshInterval:   jwksRefreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("JWKS refresh failed: keeping the keys we have", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot fetch the key set: %s", oneLine(err))
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err != nil {
		return nil, err
	}
	n := usableKeys(keys)
	if n == 0 {
		return nil, errors.New("the key set holds no RSA, ECDSA or Ed25519 public key")
	}
	log.Info("JWKS loaded", "url", url, "keys", n, "refresh", jwksRefreshInterval)
	return kf.Keyfunc, nil
}

// usableKeys counts the keys that an accepted algorithm can verify with: a symmetric
// ("oct") key in a public key set is useless to us, and never used.
func usableKeys(keys []jwkset.JWK) int {
	n := 0
	for _, k := range keys {
		switch k.Key().(type) {
		case *rsa.PublicKey, *rsa.PrivateKey, *ecdsa.PublicKey, *ecdsa.PrivateKey, ed25519.PublicKey, ed25519.PrivateKey:
			n++
		}
	}
	return n
}

// oneLine is why a fetch failed, on one line: keyfunc joins its errors with newlines,
// and a start-up error is one line. A network failure says it best by itself.
func oneLine(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Error()
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
