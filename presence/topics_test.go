package presence

import (
	"fmt"
	"slices"
	"testing"
)

func TestTopics(t *testing.T) {
	var msgs []Delivery
	for i, k := range []string{"a", "b", "a", ""} {
		msgs = append(msgs, Delivery{M: &Message{Seq: uint64(i + 1), RoutingKey: k}})
	}
	ids := func(ds []Delivery) (out []string) {
		for _, d := range ds {
			out = append(out, fmt.Sprint(d.M.Seq))
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
	s.Send([]Delivery{{M: &Message{Seq: 1, RoutingKey: "b"}}, {M: &Message{Seq: 2, RoutingKey: "a"}}, {M: &Message{Seq: 4, RoutingKey: "c"}}})
	s.Set(nil)
	s.Send([]Delivery{{M: &Message{Seq: 3, RoutingKey: "b"}}})
	var ids []string
	for _, m := range c.got {
		ids = append(ids, fmt.Sprint(m.Seq))
	}
	if !slices.Equal(ids, []string{"2", "3"}) {
		t.Errorf("sent %v, want 2 then 3", ids)
	}
	if s.User() != "u" || s.Transport() != "test" {
		t.Errorf("the wrapper must pass the connection's identity through")
	}
}
