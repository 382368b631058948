package presence

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

var _ Instances = (*MemoryInstances)(nil)

// MemoryInstances is the registry of a single process: the instances that beat it.
type MemoryInstances struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	live map[string]memInstance
}

type memInstance struct {
	inst    Instance
	expires time.Time
}

// NewMemoryInstances returns a registry where an instance lives ttl after its last beat.
func NewMemoryInstances(ttl time.Duration) *MemoryInstances {
	return &MemoryInstances{ttl: ttl, now: time.Now, live: make(map[string]memInstance)}
}

func (r *MemoryInstances) Beat(_ context.Context, inst Instance) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	old, ok := r.live[inst.ID]
	r.live[inst.ID] = memInstance{inst: inst, expires: now.Add(r.ttl)}
	return !ok || now.After(old.expires), nil
}

func (r *MemoryInstances) Leave(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, id)
	return nil
}

func (r *MemoryInstances) List(context.Context) ([]Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]Instance, 0, len(r.live))
	for id, x := range r.live {
		if now.After(x.expires) {
			delete(r.live, id)
			continue
		}
		out = append(out, x.inst)
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
