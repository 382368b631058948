package presence

// Replay is what a connection that comes back with a cursor missed. It is read in the
// same step as the connection's registration in the hub, so every message is either in
// the replay or delivered live — never both, never neither.
type Replay struct {
	From     string     // the cursor the client came back with; "" for a fresh start
	Head     Cursor     // where live delivery takes over: after the last message replayed, or where a fresh client starts
	Messages []Delivery // what came after the cursor, oldest first, each with its id on this connection
	Reset    string     // why the replay is incomplete (see the Reset* reasons); "" when whole
	More     bool       // the read stopped at its limit; more is waiting after the last message
}

// Delivery is a message as one connection gets it: At is the connection's cursor just
// after it, the message's id on that connection.
type Delivery struct {
	M  *Message
	At Cursor
}

// Why a replay is incomplete. The client still gets whatever the window holds.
const (
	ResetMalformed = "malformed cursor"
	ResetUnknown   = "unknown cursor: a position this history never reached (forged, or Redis lost writes)"
	ResetLost      = "history lost: the cursor's epoch is gone (Redis restarted, failed over, or lost the key)"
	ResetExpired   = "messages after the cursor have left the history window"
)

// Resumed reports whether the client came back with a cursor and gets everything it
// missed.
func (r *Replay) Resumed() bool { return r.From != "" && r.Reset == "" }
