package presence

import (
	"context"
	"sync"
	"time"
)

// Transitions turns connections coming and going into user.online and user.offline:
// one event when a user's connections across the deployment go from 0 to 1, one when
// they go from 1 to 0 and stay there for the offline grace (a reload or a reconnect
// within it causes none), alternating per user.
type Transitions interface {
	// Connected counts a connection of user that attached (transport: its kind).
	Connected(ctx context.Context, user, transport string)
	// Disconnected counts one that detached.
	Disconnected(ctx context.Context, user string)
	// Close announces user.offline at once for every user still online here (the
	// instance stops; with it, in memory, the deployment) and stops the timers.
	Close()
}

var _ Transitions = (*MemoryTransitions)(nil)

// MemoryTransitions is Transitions for a single instance: the hub's connections are
// every connection there is.
type MemoryTransitions struct {
	grace  time.Duration
	events Events

	mu     sync.Mutex
	users  map[string]*userPresence
	closed bool
}

type userPresence struct {
	conns  int
	online bool        // user.online was the last event sent
	timer  *time.Timer // the grace running before user.offline; nil when none
}

// NewMemoryTransitions sends the events to events, user.offline after grace.
func NewMemoryTransitions(grace time.Duration, events Events) *MemoryTransitions {
	return &MemoryTransitions{grace: grace, events: events, users: make(map[string]*userPresence)}
}

func (t *MemoryTransitions) Connected(_ context.Context, user, transport string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	u := t.users[user]
	if u == nil {
		u = &userPresence{}
		t.users[user] = u
	}
	u.conns++
	if u.timer != nil { // back within the grace: nothing happened
		u.timer.Stop()
		u.timer = nil
	}
	if !u.online {
		u.online = true
		// Emitted under the lock, so a user's events enter the outbox in order.
		t.events.Emit(Event{Type: EventOnline, User: user, At: time.Now(), Transport: transport})
	}
}

func (t *MemoryTransitions) Disconnected(_ context.Context, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.users[user]
	if t.closed || u == nil || u.conns == 0 {
		return
	}
	if u.conns--; u.conns > 0 {
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(t.grace, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if u.timer != timer || t.closed { // stopped too late: a connection came back
			return
		}
		t.offline(user, u)
	})
	u.timer = timer
}

// offline sends user.offline and forgets u; t.mu is held.
func (t *MemoryTransitions) offline(user string, u *userPresence) {
	u.timer = nil
	if u.online {
		u.online = false
		t.events.Emit(Event{Type: EventOffline, User: user, At: time.Now()})
	}
	delete(t.users, user)
}

func (t *MemoryTransitions) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	for user, u := range t.users {
		if u.timer != nil {
			u.timer.Stop()
		}
		t.offline(user, u)
	}
	t.closed = true
}
