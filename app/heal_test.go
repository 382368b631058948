package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// An operator deleting our queue or exchange must not leave the instance consuming
// nothing, or publishing nothing, while it reports ready: it reconnects and declares
// its topology again.
func TestRecoversWhenTopologyIsDeleted(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_API_KEY": testAPIKey}
	for k, v := range tp.Env {
		env[k] = v
	}
	s := apptest.Start(t, env)
	c := apptest.DialWS(t, s.WSURL("/ws/yxd/1"), "", nil)
	apptest.Eventually(t, 5*time.Second, "registered", func() bool { return connCount(t, s) == 1 })
	ch, err := apptest.RequireRabbit(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	consumed := func() bool { // the queue exists and someone consumes it
		probe, err := apptest.RequireRabbit(t).Channel()
		if err != nil {
			return false
		}
		defer probe.Close()
		q, err := probe.QueueDeclarePassive(tp.Queues[0], true, false, false, false, nil)
		return err == nil && q.Consumers > 0
	}
	receive := func(body string) {
		t.Helper()
		if f := c.Next(t, 10*time.Second); string(f.Data) != body {
			t.Fatalf("client got %q, want %q", f.Data, body)
		}
	}

	if _, err := ch.QueueDelete(tp.Queues[0], false, false, false); err != nil {
		t.Fatal(err)
	}
	apptest.Eventually(t, 20*time.Second, "the queue declared and consumed again", consumed)
	tp.Publish(t, "contract", []byte(`{"receiveUserId":"1","after":"queue deleted"}`), nil)
	receive(`{"receiveUserId":"1","after":"queue deleted"}`)

	if err := ch.ExchangeDelete(tp.Exchange, false, false); err != nil {
		t.Fatal(err)
	}
	// The first publish finds the exchange gone (and may answer 503); the instance
	// must then put it back by itself.
	apptest.Eventually(t, 20*time.Second, "publish accepted again", func() bool {
		resp, err := apptest.Post(s.URL+"/api/publish", testAPIKey, []byte(`{"routingKey":"contract","userId":"1","data":"healed"}`))
		return err == nil && resp.Status == http.StatusAccepted
	})
	receive("healed")
}
