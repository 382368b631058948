package app_test

import (
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

func TestUnusableBodiesAreRejectedAndLaterOnesArrive(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.env)
		u1 := apptest.DialWS(t, s.WSURL("/ws/yxd/1"), "", nil)
		apptest.Eventually(t, 5*time.Second, "client registered", func() bool { return connCount(t, s) == 1 })

		m.publish(t, "contract", []byte(`{"receiveUserId":"1","text":`), "") // malformed JSON
		m.publish(t, "contract", []byte(`plain text, no header`), "")        // not JSON, no x-user-id
		apptest.Eventually(t, 10*time.Second, "both rejected", func() bool {
			return metric(t, s, "pushbridge_deliveries_rejected_total") == 2
		})
		good := []byte(`{"receiveUserId":"1","text":"after the bad ones"}`)
		m.publish(t, "contract", good, "")
		// A non-JSON body is fine when the header names the recipient.
		m.publish(t, "contract", []byte(`plain text for 1`), "1")

		if f := u1.Next(t, 10*time.Second); string(f.Data) != string(good) {
			t.Fatalf("user 1 got %q, want the good message %q (a rejected one leaked through?)", f.Data, good)
		}
		if f := u1.Next(t, 10*time.Second); string(f.Data) != "plain text for 1" {
			t.Fatalf("user 1 got %q, want the headed plain-text message", f.Data)
		}
		if got := metric(t, s, "pushbridge_deliveries_rejected_total"); got != 2 {
			t.Errorf("rejected: got %v, want 2", got)
		}
		if got := counted(t, "pushbridge_deliveries_acked_total", 2, s); got != 2 {
			t.Errorf("acked: got %v, want 2", got)
		}
		s.Stop(t)
		// Rejected without requeue: nothing comes back to the queue when the consumer goes.
		m.assertAllAcked(t)
	})
}
