package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestPresenceLapseIsCaughtUp: while an instance's presence is gone from Redis (its
// heartbeat came too late, or Redis lost the keys), dispatchers do not send it its
// users' messages, which only the history then holds. The next beat finds the lapse
// and catches every connection up, so a message sent meanwhile still arrives — even
// when nothing else follows it in its stream to reveal the gap.
func TestPresenceLapseIsCaughtUp(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_PRESENCE_TTL": "1s"}
	for _, m := range []map[string]string{tp.Env, rds.Env} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)
	c := apptest.DialWS(t, s.WSURL("/ws?user=lapse"), "bridge.v1", nil)
	welcome := nextV1(t, c)
	if welcome.Type != "welcome" || welcome.Instance == "" {
		t.Fatalf("first frame %+v, want a welcome naming the instance", welcome)
	}

	// The lapse: this instance's connections vanish from presence, as when their key
	// expired. The next beat (every TTL/3) writes them back.
	connsKey := rds.Prefix + "conns:" + welcome.Instance
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := rds.Client.Del(ctx, connsKey).Result(); err != nil || n != 1 {
		t.Fatalf("delete %s: %d keys, %v; want the instance's connections hash", connsKey, n, err)
	}
	body := []byte(`{"receiveUserId":"lapse","n":1}`)
	tp.Publish(t, "contract", body, nil)

	f := nextV1(t, c)
	if f.Type != "message" || string(f.Data) != string(body) {
		t.Fatalf("got %+v, want the message sent while the instance was out of presence", f)
	}
	if got := metric(t, s, "pushbridge_relay_resyncs_total"); got < 1 {
		t.Fatalf("pushbridge_relay_resyncs_total = %v, want the lapse counted", got)
	}
}
