package presence

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxUserIDLen bounds a user id: ids are keys in memory and in Redis, and appear in
// logs, so one from a token or a message must not be arbitrarily large.
const MaxUserIDLen = 256

// CheckUserID reports whether id can name a user: non-empty, at most MaxUserIDLen
// bytes, UTF-8 without control or other non-printing characters (so ids print
// cleanly in logs and in redis-cli).
func CheckUserID(id string) error {
	switch {
	case id == "":
		return errors.New("user id is empty")
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("user id longer than %d bytes", MaxUserIDLen)
	case !utf8.ValidString(id):
		return errors.New("user id is not UTF-8")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("user id has the non-printing character %U", r)
		}
	}
	return nil
}
