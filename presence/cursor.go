package presence

import (
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
)

// Pos is a place in one stream (a user's messages, or the broadcasts): the stream's
// epoch and a sequence number, dense within the epoch (1, 2, 3 …). Seq 0 is "before
// the first message"; an empty epoch is "the stream did not exist".
type Pos struct {
	Epoch string
	Seq   uint64
}

// Cursor is where a connection stands: its place in its user's stream and in the
// broadcasts. It is what a client presents to resume (docs/redis.md, "The cursor"),
// and the id of each message sent to a connection is the connection's cursor just
// after that message.
type Cursor struct {
	User, Bcast Pos
}

// epochLen is the length of an epoch: 10 characters of [0-9a-v], 50 random bits, so a
// history that was lost and started again is told apart from the one before it.
const epochLen = 10

// MaxCursorLen bounds a cursor: two epochs, two 20-digit numbers and three separators.
const MaxCursorLen = 2*epochLen + 2*20 + 3

const epochAlphabet = "0123456789abcdefghijklmnopqrstuv"

// NewEpoch returns a fresh random epoch.
func NewEpoch() string {
	var b [epochLen]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	for i := range b {
		b[i] = epochAlphabet[b[i]&31]
	}
	return string(b[:])
}

// ErrBadCursor is returned for a cursor that is malformed.
var ErrBadCursor = errors.New("malformed cursor")

// String is the cursor as clients see it: "<user epoch>-<user seq>.<bcast epoch>-<bcast seq>".
func (c Cursor) String() string { return string(c.Append(make([]byte, 0, MaxCursorLen))) }

// Append appends the cursor's text to b: the writers call it with a scratch buffer of
// their own, so an id costs no allocation.
func (c Cursor) Append(b []byte) []byte {
	b = c.User.append(b)
	b = append(b, '.')
	return c.Bcast.append(b)
}

// String is the position as text, <epoch>-<seq>: what receipts and events name a
// message by (a cursor is two of these).
func (p Pos) String() string { return string(p.append(nil)) }

func (p Pos) append(b []byte) []byte {
	b = append(b, p.Epoch...)
	b = append(b, '-')
	return strconv.AppendUint(b, p.Seq, 10)
}

// ParseCursor reads a cursor written by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	if len(s) > MaxCursorLen {
		return Cursor{}, ErrBadCursor
	}
	u, b, ok := strings.Cut(s, ".")
	if !ok {
		return Cursor{}, ErrBadCursor
	}
	var c Cursor
	var err error
	if c.User, err = parsePos(u); err != nil {
		return Cursor{}, err
	}
	if c.Bcast, err = parsePos(b); err != nil {
		return Cursor{}, err
	}
	return c, nil
}

func parsePos(s string) (Pos, error) {
	e, n, ok := strings.Cut(s, "-")
	if !ok || !validEpoch(e) || n == "" || len(n) > 20 || (n[0] == '0' && len(n) > 1) {
		return Pos{}, ErrBadCursor
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil || (e == "" && seq != 0) {
		return Pos{}, ErrBadCursor
	}
	return Pos{Epoch: e, Seq: seq}, nil
}

// validEpoch: empty, or epochLen characters of the epoch alphabet.
func validEpoch(e string) bool {
	if e == "" {
		return true
	}
	if len(e) != epochLen {
		return false
	}
	for i := 0; i < len(e); i++ {
		if !strings.ContainsRune(epochAlphabet, rune(e[i])) {
			return false
		}
	}
	return true
}
