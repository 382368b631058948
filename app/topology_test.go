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

// A queue or exchange the broker already holds with other arguments than ours, or a
// dead-letter exchange that does not exist, is a configuration error: the start fails
// and says which one and what to change, rather than retrying forever.
func TestStartFailsOnClashingTopology(t *testing.T) {
	classic := func(ch *amqp.Channel, tp *apptest.Topology) error {
		_, err := ch.QueueDeclare(tp.Queues[0], true, false, false, false, nil)
		return err
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		declare func(ch *amqp.Channel, tp *apptest.Topology) error
		mention func(tp *apptest.Topology) string
		says    []string
	}{
		{"queue with x-max-length", nil, func(ch *amqp.Channel, tp *apptest.Topology) error {
			_, err := ch.QueueDeclare(tp.Queues[0], true, false, false, false, amqp.Table{"x-max-length": int32(10)})
			return err
		}, func(tp *apptest.Topology) string { return tp.Queues[0] }, []string{"other arguments"}},
		{"fanout exchange", nil, func(ch *amqp.Channel, tp *apptest.Topology) error {
			return ch.ExchangeDeclare(tp.Exchange, amqp.ExchangeFanout, true, false, false, false, nil)
		}, func(tp *apptest.Topology) string { return tp.Exchange }, []string{"other arguments"}},
		{"classic queue, quorum wanted", map[string]string{"BRIDGE_QUEUE_TYPE": "quorum"}, classic,
			func(tp *apptest.Topology) string { return tp.Queues[0] }, []string{"other arguments", "BRIDGE_QUEUE_TYPE"}},
		{"quorum queue, classic wanted", nil, func(ch *amqp.Channel, tp *apptest.Topology) error {
			_, err := ch.QueueDeclare(tp.Queues[0], true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": 5})
			return err
		}, func(tp *apptest.Topology) string { return tp.Queues[0] }, []string{"other arguments", "BRIDGE_QUEUE_TYPE"}},
		{"quorum queue with another delivery limit", map[string]string{"BRIDGE_QUEUE_TYPE": "quorum", "BRIDGE_DELIVERY_LIMIT": "3"},
			func(ch *amqp.Channel, tp *apptest.Topology) error {
				_, err := ch.QueueDeclare(tp.Queues[0], true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": 5})
				return err
			}, func(tp *apptest.Topology) string { return tp.Queues[0] }, []string{"other arguments", "BRIDGE_DELIVERY_LIMIT"}},
		{"no such dead-letter exchange", map[string]string{"BRIDGE_DEAD_LETTER_EXCHANGE": "pbtest_no_such_dlx"},
			func(*amqp.Channel, *apptest.Topology) error { return nil },
			func(*apptest.Topology) string { return "pbtest_no_such_dlx" }, []string{"BRIDGE_DEAD_LETTER_EXCHANGE", "no exchange"}},
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
			for _, m := range []map[string]string{tp.Env, tc.env} {
				for k, v := range m {
					env[k] = v
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = app.Run(ctx, []string{"pushbridge"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("Run started (and ran until the deadline) with a clashing topology, want an error")
			}
			msg := err.Error()
			for _, want := range append(tc.says, tc.mention(tp)) {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q should say %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
}
