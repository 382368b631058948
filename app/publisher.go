package app

import (
	"context"
	"errors"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/handlers"
)

// brokerPublisher is the broker as the routes publish to it: each message gets a
// random AMQP message-id, and its user goes in header x-user-id.
type brokerPublisher struct{ b broker.Broker }

func (p brokerPublisher) Publish(ctx context.Context, hp handlers.Publishing) (string, error) {
	bp := broker.Publishing{RoutingKey: hp.RoutingKey, Body: hp.Body, MessageID: broker.NewID()}
	if hp.UserID != "" {
		bp.Headers = map[string]any{HeaderUserID: hp.UserID}
	}
	err := p.b.Publish(ctx, bp)
	switch {
	case err == nil:
		return bp.MessageID, nil
	case errors.Is(err, broker.ErrUnroutable):
		return "", kindError{handlers.ErrUnroutable, err}
	case errors.Is(err, broker.ErrUnavailable):
		return "", kindError{handlers.ErrBrokerDown, err}
	}
	return "", err
}

// kindError is err, saying what err says, that is also of kind.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }
