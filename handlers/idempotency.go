package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// Idempotency-Key on POST /api/publish: the key becomes the AMQP message-id, and the
// answer to the first request with it is remembered (app/idempotency) and given again
// to every later one within the window, which publishes nothing.
const (
	// maxIdempotencyKey is the longest key: it becomes the AMQP message-id, a short
	// string of at most 255 bytes.
	maxIdempotencyKey = 255
	// idempotencyWait is how long a request waits for another with its key to finish
	// publishing: a little over a publish's longest confirm wait (10 s). Past it, 409.
	idempotencyWait = 15 * time.Second
)

// idempotencyKey reads the Idempotency-Key header: "" when there is none. The IETF
// draft sends it as a structured-field string ("…"), many clients without quotes; both
// are taken.
func idempotencyKey(h http.Header) (string, error) {
	vs := h.Values("Idempotency-Key")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", &Error{Status: http.StatusBadRequest, Msg: "more than one Idempotency-Key header"}
	}
	k := vs[0]
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	switch {
	case k == "":
		return "", &Error{Status: http.StatusBadRequest, Msg: "Idempotency-Key is empty"}
	case len(k) > maxIdempotencyKey:
		return "", &Error{Status: http.StatusBadRequest, Msg: "Idempotency-Key is longer than 255 bytes"}
	}
	for i := 0; i < len(k); i++ {
		if b := k[i]; b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return "", &Error{Status: http.StatusBadRequest, Msg: "Idempotency-Key may hold only printable ASCII: letters, digits and punctuation, no spaces, quotes or backslashes"}
		}
	}
	return k, nil
}

// fingerprint tells one publish request from another under the same key: what would
// be published (routing key, recipient header, body).
func fingerprint(p Publishing) string {
	h := sha256.New()
	for _, part := range []string{p.RoutingKey, p.UserID} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(p.Body)
	return hex.EncodeToString(h.Sum(nil))
}
