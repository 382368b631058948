package presence

// Replay is what a connection that comes back with a cursor missed. It is read in the
// same step as the connection's registration in the hub, so every message is either in
// the replay or delivered live — never both, never neither.
type Replay struct {
	From     string     // the cursor the client came back with; "" for a fresh start
	Head     string     // newest cursor when the connection registered: where a fresh client starts
	Messages []*Message // what came after the cursor, oldest first
	Reset    string     // why the replay is incomplete (see the Reset* reasons); "" when whole
	More     bool       // the read stopped at its limit; more is waiting after the last message
}

// Why a replay is incomplete. The client still gets whatever the window holds.
const (
	ResetMalformed = "malformed cursor"
	ResetUnknown   = "unknown cursor: not handed out by this history (restarted, or from elsewhere)"
	ResetExpired   = "messages after the cursor have left the history window"
)

// Resumed reports whether the client came back with a cursor and gets everything it
// missed.
func (r *Replay) Resumed() bool { return r.From != "" && r.Reset == "" }
