package handlers

import (
	"context"
	"errors"
)

// Publishing is one message published through the broker: a backend's (POST
// /api/publish) or a client's own (BRIDGE_INBOUND=broker).
type Publishing struct {
	RoutingKey string
	Body       []byte
	// UserID is the recipient of a backend's message ("": as the body says) or the
	// sender of a client's, always the authenticated one.
	UserID string
}

// Publisher publishes to the broker and returns the message's id once the broker has
// confirmed it. app adapts its broker to it (app/publisher.go), so this package does
// not link the AMQP library.
type Publisher interface {
	Publish(ctx context.Context, p Publishing) (id string, err error)
}

// What a Publisher's error may be, beside others (answered 500).
var (
	ErrUnroutable = errors.New("no queue is bound to that routing key") // 404
	ErrBrokerDown = errors.New("the message broker is unavailable")     // 503 + Retry-After
)
