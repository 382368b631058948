package presence

import "context"

// Listen receives what the relay brings to this instance and hands it to the local
// connections (Deliver), until ctx ends. Every subscription after the first may have
// missed messages: the connections are caught up from the history before the live
// messages that follow (the relay waits for its subscribed callback to return).
func (h *Hub) Listen(ctx context.Context, relay Relay) error {
	return relay.Run(ctx, func(ms []*Message) {
		if h.relayed != nil {
			h.relayed(ms)
		}
		h.DeliverAll(ms)
	}, func() { h.subscribed(ctx) })
}

// Listening is closed once the relay listens: a message dispatched after that reaches
// this instance's connections.
func (h *Hub) Listening() <-chan struct{} { return h.listening }

func (h *Hub) subscribed(ctx context.Context) {
	first := false
	h.listeningOnce.Do(func() { first = true; close(h.listening) })
	if first {
		return
	}
	h.CatchUp(ctx, "relay resubscribed")
}

// CatchUp catches every local connection up from the history, when this instance may
// have missed messages: the relay subscribed again, or this instance was out of
// presence for a while. It is safe beside Deliver: each connection takes only ids
// above the last it was given, under its own lock.
func (h *Hub) CatchUp(ctx context.Context, why string) {
	h.Stats.Resyncs.Add(1)
	if err := h.Resync(ctx); err != nil {
		h.log.Warn(why+"; some connections are not caught up yet (retried with their next message)", "err", err)
	}
}
