package presence

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Entry is one connection as the directory knows it.
type Entry struct {
	User      string    `json:"user"`
	Instance  string    `json:"instance"`
	Transport string    `json:"transport"`
	Since     time.Time `json:"since"`
}

// Directory records which instances hold a user's connections, so a message consumed
// anywhere reaches the instances that can deliver it.
type Directory interface {
	Add(ctx context.Context, e Entry) error
	Remove(ctx context.Context, e Entry) error
	// Lookup lists user's connections on every live instance, ordered by instance
	// and then age.
	Lookup(ctx context.Context, user string) ([]Entry, error)
	// Users counts, per live instance, the distinct users with a connection there
	// (a user with tabs on two instances counts on both). Instances without
	// connections are left out.
	Users(ctx context.Context) (map[string]int, error)
}

// same reports whether a and b are the same connection. Times are compared with
// Equal: a Since that went through Redis has lost its monotonic reading.
func (e Entry) same(o Entry) bool {
	return e.User == o.User && e.Instance == o.Instance && e.Transport == o.Transport && e.Since.Equal(o.Since)
}

func sortEntries(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		if c := cmp.Compare(a.Instance, b.Instance); c != 0 {
			return c
		}
		return a.Since.Compare(b.Since)
	})
}
