package presence

import (
	"context"
	"sync"
)

var _ Directory = (*MemoryDirectory)(nil)

// MemoryDirectory is the Directory of a single instance.
type MemoryDirectory struct {
	mu    sync.Mutex
	users map[string][]Entry
}

// NewMemoryDirectory returns an empty directory.
func NewMemoryDirectory() *MemoryDirectory { return &MemoryDirectory{users: make(map[string][]Entry)} }

func (d *MemoryDirectory) Add(_ context.Context, e Entry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users[e.User] = append(d.users[e.User], e)
	return nil
}

func (d *MemoryDirectory) Remove(_ context.Context, e Entry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	es := d.users[e.User]
	for i, x := range es {
		if x == e {
			es = append(es[:i], es[i+1:]...)
			break
		}
	}
	if len(es) == 0 {
		delete(d.users, e.User)
	} else {
		d.users[e.User] = es
	}
	return nil
}

func (d *MemoryDirectory) Lookup(_ context.Context, user string) ([]Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Entry(nil), d.users[user]...), nil
}
