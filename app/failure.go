package app

import (
	"errors"

	"github.com/redis/go-redis/v9"
)

// ownFault says whether a failed dispatch failed because of the message itself: Redis
// answered and refused it (one of its keys holds the wrong type, say), so trying it
// again will fail again and the delivery counts toward the delivery limit. Anything
// else is the hand-off failing for everyone — no answer (unreachable, timed out, the
// in-memory dispatcher stopping) or an answer about Redis's own state (loading, out of
// memory, read-only, busy, a cluster failing over, refused credentials) — and must
// never dead-letter a message, however long it lasts.
func ownFault(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	switch {
	case moved, ask,
		redis.IsLoadingError(err), redis.IsReadOnlyError(err), redis.IsOOMError(err),
		redis.IsClusterDownError(err), redis.IsTryAgainError(err), redis.IsMasterDownError(err),
		redis.IsNoReplicasError(err), redis.IsMaxClientsError(err),
		redis.IsAuthError(err), redis.IsPermissionError(err), redis.IsExecAbortError(err),
		redis.HasErrorPrefix(err, "BUSY"), redis.HasErrorPrefix(err, "MISCONF"),
		redis.HasErrorPrefix(err, "NOSCRIPT"):
		return false
	}
	return true
}
