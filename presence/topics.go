package presence

import (
	"slices"
	"sync/atomic"
)

// Topics is a connection's subscription: the routing keys of the messages it wants,
// its own and broadcasts alike. A nil *Topics wants everything (no subscription).
// A subscription only narrows what the connection receives; it never adds another
// user's messages.
type Topics struct {
	keys []string // sorted, distinct
}

// NewTopics is the subscription to keys; none means everything (nil).
func NewTopics(keys []string) *Topics {
	if len(keys) == 0 {
		return nil
	}
	ks := slices.Clone(keys)
	slices.Sort(ks)
	return &Topics{keys: slices.Compact(ks)}
}

// Wants reports whether a connection with this subscription receives m.
func (t *Topics) Wants(m *Message) bool {
	if t == nil {
		return true
	}
	_, ok := slices.BinarySearch(t.keys, m.RoutingKey)
	return ok
}

// Keys are the subscribed routing keys, sorted; nil for everything.
func (t *Topics) Keys() []string {
	if t == nil {
		return nil
	}
	return t.keys
}

// Filter returns the deliveries of ds that t wants, in order.
func (t *Topics) Filter(ds []Delivery) []Delivery {
	if t == nil {
		return ds
	}
	out := make([]Delivery, 0, len(ds))
	for _, d := range ds {
		if t.Wants(d.M) {
			out = append(out, d)
		}
	}
	return out
}

// Subscribed is a connection that is sent only what its subscription wants. It is
// what the hub holds for the connection: the hub's ordering and gap repair see every
// message, and the subscription decides which of them go out.
type Subscribed struct {
	Conn
	topics atomic.Pointer[Topics]
}

// Subscribe wraps c with the subscription t (nil: everything).
func Subscribe(c Conn, t *Topics) *Subscribed {
	s := &Subscribed{Conn: c}
	s.topics.Store(t)
	return s
}

// Send passes on the deliveries the subscription wants (filtered in place). A message
// left out still moves the connection's cursor: the next id it is sent is past it.
func (s *Subscribed) Send(ds []Delivery) {
	if t := s.topics.Load(); t != nil {
		ds = slices.DeleteFunc(ds, func(d Delivery) bool { return !t.Wants(d.M) })
	}
	if len(ds) > 0 {
		s.Conn.Send(ds)
	}
}

// Replay passes the replay on with only the messages the subscription wants.
func (s *Subscribed) Replay(rp *Replay) {
	t := s.topics.Load()
	if t == nil {
		s.Conn.Replay(rp)
		return
	}
	only := *rp
	only.Messages = t.Filter(rp.Messages)
	s.Conn.Replay(&only)
}

// Set replaces the subscription; messages sent from now on follow it.
func (s *Subscribed) Set(t *Topics) { s.topics.Store(t) }
