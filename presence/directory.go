package presence

import (
	"context"
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
	// Lookup lists user's connections on every live instance.
	Lookup(ctx context.Context, user string) ([]Entry, error)
}
