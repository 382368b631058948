package presence

import "time"

// The types of the events Pushbridge sends the backend; each is the routing key it is
// published with (see docs/events.md).
const (
	EventOnline      = "user.online"         // the user's connections went from 0 to 1
	EventOffline     = "user.offline"        // and from 1 to 0, after the offline grace
	EventUndelivered = "message.undelivered" // a targeted message found no connection
	EventReceived    = "message.received"    // a client confirmed it handled a message
)

// Event is one thing that happened that the backend may act on.
type Event struct {
	Type      string
	User      string
	At        time.Time
	Transport string // user.online: the transport of the connection that made it
	// Seq numbers a user's user.online and user.offline events with REDIS_URL: one
	// more with each, higher than every earlier one (a new count starts at the clock's
	// ms). Made on different instances, they may arrive out of order. 0 in memory mode,
	// where one instance makes them in order.
	Seq     uint64
	Message *Message // message.undelivered and message.received: the message
}

// Events takes events to the backend (app puts them in its outbox for RabbitMQ, or in
// the log). Emit never blocks and never fails: what cannot be published now is the
// implementation's to keep and retry.
type Events interface {
	Emit(e Event)
}

// NoEvents is Events for a deployment that sends none.
type NoEvents struct{}

func (NoEvents) Emit(Event) {}
