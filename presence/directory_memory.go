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
	if es := removeEntry(d.users[e.User], e); len(es) == 0 {
		delete(d.users, e.User)
	} else {
		d.users[e.User] = es
	}
	return nil
}

// removeEntry drops the first connection of es that is e.
func removeEntry(es []Entry, e Entry) []Entry {
	for i, x := range es {
		if x.same(e) {
			return append(es[:i], es[i+1:]...)
		}
	}
	return es
}

func (d *MemoryDirectory) Lookup(_ context.Context, user string) ([]Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]Entry(nil), d.users[user]...)
	sortEntries(out)
	return out, nil
}

func (d *MemoryDirectory) Users(context.Context) (map[string]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int)
	for _, es := range d.users {
		seen := make(map[string]bool, 1)
		for _, e := range es {
			if !seen[e.Instance] {
				seen[e.Instance] = true
				out[e.Instance]++
			}
		}
	}
	return out, nil
}
