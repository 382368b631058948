package app

import (
	"testing"

	"github.com/pushbridge/pushbridge/app/broker"
)

// TestOrderKeyIsTheRecipient: the broker's order key is a delivery's recipient, ""
// for a broadcast and for a body that can never be delivered; what it found reaches
// the consumer with the delivery, which does not read the body again.
func TestOrderKeyIsTheRecipient(t *testing.T) {
	key := orderKey(64)
	for _, tc := range []struct {
		d       broker.Delivery
		want    string
		wantErr bool
	}{
		{broker.Delivery{Body: []byte(`{"receiveUserId":"7","n":1}`)}, "7", false},
		{broker.Delivery{Body: []byte(`{"receiveUserId":42}`)}, "42", false},
		{broker.Delivery{Body: []byte(`plain`), Headers: map[string]any{"x-user-id": "u9"}}, "u9", false},
		{broker.Delivery{Body: []byte(`{"n":1}`)}, "", false},
		{broker.Delivery{Body: []byte(`{"receiveUserId":"7",`)}, "", true},
		{broker.Delivery{Body: nil}, "", true},
		{broker.Delivery{Body: []byte(`{"receiveUserId":"7","pad":"` + string(make([]byte, 64)) + `"}`)}, "", true},
	} {
		k, decoded := key(tc.d)
		tg, ok := decoded.(target)
		if k != tc.want || !ok || tg.user != tc.want || (tg.err != nil) != tc.wantErr {
			t.Errorf("%q: key %q, decoded %+v; want %q, error %v", tc.d.Body, k, decoded, tc.want, tc.wantErr)
		}
	}

	c := &Consumer{maxBytes: 64}
	d := broker.Delivery{Body: []byte(`{"receiveUserId":"1"}`), Decoded: target{user: "2"}}
	if m, err := c.decode(d); err != nil || m.UserID != "2" {
		t.Errorf("decode with the order key's target: %+v, %v; want user 2 (the body read again?)", m, err)
	}
	d.Decoded = nil
	if m, err := c.decode(d); err != nil || m.UserID != "1" {
		t.Errorf("decode without it: %+v, %v; want user 1", m, err)
	}
}
