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

	// The lapse: this instance's lease and its user's presence vanish, as when Redis
	// lost them. The next beat (every TTL/3) finds its lease gone and writes them back.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for key, field := range map[string]string{rds.Prefix + "{r}:instances": welcome.Instance, rds.Prefix + "{u:lapse}:meta": "i:" + welcome.Instance} {
		if n, err := rds.Client.HDel(ctx, key, field).Result(); err != nil || n != 1 {
			t.Fatalf("HDEL %s %s: %d fields, %v; want the instance's", key, field, n, err)
		}
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

// TestPresenceRewrittenWhole: one user's presence deleted, then another user attaching
// on the same instance, must not leave the first out of presence for good (issue 11,
// item 1): every beat rewrites every connection of the instance, and compares each
// with its stream's top, so the message sent meanwhile arrives.
func TestPresenceRewrittenWhole(t *testing.T) {
	tp := apptest.NewTopology(t, "contract")
	rds := apptest.NewRedis(t)
	env := map[string]string{"BRIDGE_DEV": "1", "AMQP_URL": apptest.AMQPURL(), "BRIDGE_PRESENCE_TTL": "1s"}
	for _, m := range []map[string]string{tp.Env, rds.Env} {
		for k, v := range m {
			env[k] = v
		}
	}
	s := apptest.Start(t, env)
	c := apptest.DialWS(t, s.WSURL("/ws?user=hidden"), "bridge.v1", nil)
	welcome := nextV1(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	meta := rds.Prefix + "{u:hidden}:meta"
	if n, err := rds.Client.HDel(ctx, meta, "i:"+welcome.Instance).Result(); err != nil || n != 1 {
		t.Fatalf("HDEL %s: %d fields, %v", meta, n, err)
	}
	other := apptest.DialWS(t, s.WSURL("/ws?user=newcomer"), "bridge.v1", nil)
	if f := nextV1(t, other); f.Type != "welcome" {
		t.Fatalf("newcomer's first frame %+v, want a welcome", f)
	}
	body := []byte(`{"receiveUserId":"hidden","n":1}`)
	tp.Publish(t, "contract", body, nil)

	f := nextV1(t, c)
	if f.Type != "message" || string(f.Data) != string(body) {
		t.Fatalf("got %+v, want the message sent while the user was out of presence", f)
	}
	if n, err := rds.Client.HExists(ctx, meta, "i:"+welcome.Instance).Result(); err != nil || !n {
		t.Errorf("the user's presence was not written back: %v, %v", n, err)
	}
	// A beat heals the connection; one that came late (a loaded machine) catches
	// every connection up instead.
	if h, r := metric(t, s, "pushbridge_presence_heals_total"), metric(t, s, "pushbridge_relay_resyncs_total"); h+r < 1 {
		t.Fatalf("pushbridge_presence_heals_total = %v, pushbridge_relay_resyncs_total = %v: want the heal counted", h, r)
	}
}
