package presence

import (
	"slices"
	"testing"
)

func TestTopics(t *testing.T) {
	msgs := []*Message{{ID: "1", RoutingKey: "a"}, {ID: "2", RoutingKey: "b"}, {ID: "3", RoutingKey: "a"}, {ID: "4", RoutingKey: ""}}
	ids := func(ms []*Message) (out []string) {
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	var all *Topics
	if got := ids(all.Filter(msgs)); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Errorf("no subscription passed %v, want everything", got)
	}
	if NewTopics(nil) != nil || NewTopics([]string{}) != nil {
		t.Error("an empty subscription must be everything (nil)")
	}
	a := NewTopics([]string{"a", "a", "zz"})
	if got := ids(a.Filter(msgs)); !slices.Equal(got, []string{"1", "3"}) {
		t.Errorf("subscription to a passed %v, want 1 and 3", got)
	}
	if !slices.Equal(a.Keys(), []string{"a", "zz"}) {
		t.Errorf("keys %v, want sorted and distinct", a.Keys())
	}
}

// TestSubscribedSendsWhatItWants: the wrapper filters what reaches the connection, and
// a new subscription applies to the next message.
func TestSubscribedSendsWhatItWants(t *testing.T) {
	c := &recConn{user: "u"}
	s := Subscribe(c, NewTopics([]string{"a"}))
	s.Send(&Message{ID: "1", RoutingKey: "b"})
	s.Send(&Message{ID: "2", RoutingKey: "a"})
	s.Set(nil)
	s.Send(&Message{ID: "3", RoutingKey: "b"})
	var ids []string
	for _, m := range c.got {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"2", "3"}) {
		t.Errorf("sent %v, want 2 then 3", ids)
	}
	if s.User() != "u" || s.Transport() != "test" {
		t.Errorf("the wrapper must pass the connection's identity through")
	}
}
