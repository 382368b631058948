package app_test

import (
	"github.com/pushbridge/pushbridge/presence"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

func TestBridgeV1Frames(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.env)
		c := apptest.DialWS(t, s.WSURL("/ws?user=ann"), "bridge.v1", nil)
		if c.Conn.Subprotocol() != "bridge.v1" {
			t.Fatalf("negotiated subprotocol %q, want bridge.v1", c.Conn.Subprotocol())
		}
		w := nextV1(t, c)
		if w.Type != "welcome" || w.User != "ann" || w.Instance == "" || w.Resumed == nil || *w.Resumed {
			t.Fatalf("first frame %+v, want welcome for ann with an instance and resumed:false", w)
		}
		apptest.Eventually(t, 5*time.Second, "registered", func() bool { return connCount(t, s) == 1 })

		m.publish(t, "contract", []byte(`{"receiveUserId":"ann","n":1}`), "")
		m.publish(t, "transaction", []byte(`plain text`), "ann")
		m.publish(t, "contract", []byte(`{"broadcast":true}`), "")
		m.publish(t, "contract", []byte(`{"receiveUserId":"someone else"}`), "")
		m.publish(t, "transaction", []byte(`{"receiveUserId":"ann","n":2}`), "")
		// Per queue in publish order; the two queues are consumed independently, so
		// their messages may interleave either way, but ids grow in arrival order.
		want := map[string][]string{
			"contract":    {`{"receiveUserId":"ann","n":1}`, `{"broadcast":true}`},
			"transaction": {`"plain text"`, `{"receiveUserId":"ann","n":2}`},
		}
		prev := ""
		for i := range 4 {
			f := nextV1(t, c)
			if f.Type != "message" || len(want[f.RoutingKey]) == 0 || string(f.Data) != want[f.RoutingKey][0] {
				t.Fatalf("frame %d: got %+v data %s, want a message frame, next on its key: %q", i, f, f.Data, want)
			}
			want[f.RoutingKey] = want[f.RoutingKey][1:]
			if f.ID == "" || (prev != "" && !idLess(prev, f.ID)) {
				t.Fatalf("frame %d: id %q after %q, want a non-empty id greater than the last", i, f.ID, prev)
			}
			prev = f.ID
		}
	})
}

// idLess orders two ids of one connection: ids are opaque to clients, but each is the
// connection's position in its two streams, and a later one is ahead in one and
// behind in neither.
func idLess(a, b string) bool {
	x, err1 := presence.ParseCursor(a)
	y, err2 := presence.ParseCursor(b)
	if err1 != nil || err2 != nil {
		return false
	}
	sameEpochs := (x.User.Epoch == "" || x.User.Epoch == y.User.Epoch) && (x.Bcast.Epoch == "" || x.Bcast.Epoch == y.Bcast.Epoch)
	return sameEpochs && x.User.Seq <= y.User.Seq && x.Bcast.Seq <= y.Bcast.Seq && x.User.Seq+x.Bcast.Seq < y.User.Seq+y.Bcast.Seq
}
