package app_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
)

// A queue or exchange the broker already holds with other arguments than ours is a
// configuration error: the start fails and says which one, rather than retrying forever.
func TestStartFailsOnClashingTopology(t *testing.T) {
	for _, tc := range []struct {
		name    string
		declare func(ch *amqp.Channel, tp *apptest.Topology) error
		mention func(tp *apptest.Topology) string
	}{
		{"queue with x-max-length", func(ch *amqp.Channel, tp *apptest.Topology) error {
			_, err := ch.QueueDeclare(tp.Queues[0], true, false, false, false, amqp.Table{"x-max-length": int32(10)})
			return err
		}, func(tp *apptest.Topology) string { return tp.Queues[0] }},
		{"fanout exchange", func(ch *amqp.Channel, tp *apptest.Topology) error {
			return ch.ExchangeDeclare(tp.Exchange, amqp.ExchangeFanout, true, false, false, false, nil)
		}, func(tp *apptest.Topology) string { return tp.Exchange }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := apptest.NewTopology(t, "contract")
			ch, err := apptest.RequireRabbit(t).Channel()
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if err := tc.declare(ch, tp); err != nil {
				t.Fatalf("declare the clashing topology: %v", err)
			}
			env := map[string]string{"BRIDGE_DEV": "1", "PORT": "0", "AMQP_URL": apptest.AMQPURL()}
			for k, v := range tp.Env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = app.Run(ctx, []string{"pushbridge"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("Run started (and ran until the deadline) with a clashing topology, want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.mention(tp)) || !strings.Contains(msg, "other arguments") {
				t.Errorf("error %q should name %s and say it has other arguments", msg, tc.mention(tp))
			}
		})
	}
}
