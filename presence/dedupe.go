package presence

import (
	"crypto/sha256"
	"encoding/hex"
)

// DedupeKey is the dedupe key of a message the broker delivered with a message-id:
// its queue, the id and a hash of its body. A different message that reuses an id
// (one event id fanned out to several users, each their own body) is a new message;
// the key is scoped to the message's stream besides (see Dispatch).
func DedupeKey(queue, messageID string, body []byte) string {
	return "id\x00" + queue + "\x00" + messageID + "\x00" + bodyHash(body)
}

// ContentKey is the dedupe key of a message delivered without a message-id: its
// routing key and a hash of its body. Two equal messages published on purpose share
// it, so it is only checked for a delivery the broker marks redelivered, and recorded
// (Dispatch.RecordOnly) for every first delivery.
func ContentKey(routingKey string, body []byte) string {
	return "content\x00" + routingKey + "\x00" + bodyHash(body)
}

func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
