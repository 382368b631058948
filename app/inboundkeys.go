package app

import (
	"fmt"
	"slices"

	"github.com/pushbridge/pushbridge/app/broker"
)

// inboundKeysDefault are the routing keys clients may send with when
// BRIDGE_INBOUND_KEYS is unset.
//   - broadcast: only "inbound" (what a client sends without naming a key). Every
//     connection receives a client's message under the key the client chose, so a
//     client free to choose would send what looks like a backend's message ("contract")
//     to everyone.
//   - broker: any key but ours. The message goes to the backends through RabbitMQ,
//     stamped with the sender's id (x-user-id), under the key the client names — the
//     contract (DESIGN.md: "the frame's routing key") — and only queues bound to that
//     key receive it. List the keys your backends take client messages on to narrow it.
var inboundKeysDefault = map[string][]string{"broadcast": {"inbound"}, "broker": {"*"}}

// settleInboundKeys fills in the default allow-list, and refuses one that lists a key
// of BRIDGE_BINDINGS: a client message under it would pass for a backend's (in broker
// mode it would come back through our own consumer; in broadcast mode everyone would
// get it under that key).
func settleInboundKeys(c *Config) error {
	if c.InboundKeys == nil {
		c.InboundKeys = inboundKeysDefault[c.Inbound]
	}
	for _, k := range c.InboundKeys {
		if slices.ContainsFunc(c.Bindings, func(b broker.Binding) bool { return b.Key == k }) {
			return fmt.Errorf("BRIDGE_INBOUND_KEYS: %q is a routing key of BRIDGE_BINDINGS: a client's message under it would pass for a backend's", k)
		}
	}
	return nil
}
