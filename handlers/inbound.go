package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/pushbridge/pushbridge/presence"
)

// defaultInboundKey is the routing key of what a client sends without naming one.
const defaultInboundKey = "inbound"

var (
	errInboundOff      = errors.New("sending is turned off on this server (BRIDGE_INBOUND=off)")
	errInboundReserved = errors.New("that routing key is consumed by this gateway itself, so clients may not publish to it")
)

// inbound carries what a client sends, as BRIDGE_INBOUND says.
type inbound struct {
	mode string
	pub  Publisher
	disp presence.Dispatcher
	// reserved are the routing keys of our own bindings. A client message published
	// with one would come back to us and be delivered as if a backend had sent it: to
	// anyone it names, or to everyone.
	reserved map[string]bool
}

func newInbound(mode string, pub Publisher, disp presence.Dispatcher, consumedKeys []string) *inbound {
	in := &inbound{mode: mode, pub: pub, disp: disp, reserved: make(map[string]bool)}
	for _, k := range consumedKeys {
		in.reserved[k] = true
	}
	return in
}

// send handles data sent by user. The sender's id is always the authenticated one,
// never one the client claims.
func (in *inbound) send(ctx context.Context, user, routingKey string, data []byte) error {
	if routingKey == "" {
		routingKey = defaultInboundKey
	}
	switch in.mode {
	case "broker":
		if in.reserved[routingKey] {
			return fmt.Errorf("%w: %q", errInboundReserved, routingKey)
		}
		_, err := in.pub.Publish(ctx, Publishing{RoutingKey: routingKey, Body: data, UserID: user})
		return err
	case "broadcast":
		body := make([]byte, 0, len(user)+3+len(data))
		body = append(append(append(body, user...), " : "...), data...)
		if _, err := in.disp.Dispatch(ctx, &presence.Message{RoutingKey: routingKey, Body: body}, ""); err != nil {
			return fmt.Errorf("dispatch: %w", err)
		}
		return nil
	}
	return errInboundOff
}
