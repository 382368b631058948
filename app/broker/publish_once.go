package broker

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// PublishOnce dials url, publishes p to exchange with confirms and mandatory, and
// hangs up: for scripts and the publish command.
func PublishOnce(ctx context.Context, url, exchange string, p Publishing) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(dialTimeout)})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Close()
	pub, err := newPublisher(conn, exchange)
	if err != nil {
		return err
	}
	return pub.publish(ctx, p)
}
