package handlers

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// PollWait is the longest a poll waits for a message: under the 30 s idle cut of
// common proxies and load balancers, so the client gets an empty answer, not a cut.
const PollWait = 25 * time.Second

// Bounds of one poll answer; the client polls again at once for the rest.
const (
	maxPollMessages = 500
	// maxPollBytes bounds the history one answer holds (by presence.Message.Size), as
	// a connection's queue budget bounds its replay: what one request pins in memory
	// and in the answer a browser parses at once.
	maxPollBytes = 1 << 20
)

// handlePoll serves GET /poll?cursor=: the messages after the cursor, at once when
// there are some, else the first ones that arrive within ?wait= (at most PollWait, and
// at most one heartbeat: see pollHold). Without a cursor it answers at once with the
// newest cursor, where the client starts. It keeps no state between polls, so any
// instance can answer any poll.
//
// The answer is {"messages":[<bridge.v1 message frames>],"cursor":…,"reset":…}.
func handlePoll(dr *door, rule *topicRule, heartbeat time.Duration) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		user, err := dr.auth.Admit(r, "")
		if err != nil {
			return err
		}
		// After admission: the rule's refusal names the keys this gateway consumes.
		topics, err := rule.query(r)
		if err != nil {
			return err
		}
		wait, err := pollWait(c.QueryParam("wait"))
		if err != nil {
			return err
		}
		wait = pollHold(wait, heartbeat)
		if err := dr.open(); err != nil {
			return err
		}
		cursor := c.QueryParam("cursor")
		if err := dr.resuming(user, cursor); err != nil {
			return err
		}
		ctx := context.WithoutCancel(r.Context())
		// First a plain read: a poll that has something to answer (or must not wait)
		// answers from it, registering nothing — one history read instead of a
		// directory write, the reads, and a directory delete.
		rp, err := dr.hub.Replay(ctx, user, cursor, maxPollMessages, maxPollBytes)
		if err != nil {
			return err
		}
		if !pollMustWait(cursor, wait, rp, topics) {
			return writePoll(c, rp, nil, topics, nil)
		}
		// Nothing yet: register, read again (what came in between is in this read),
		// and wait for what comes live.
		release, err := dr.reserve(ctx, user)
		if err != nil {
			return err
		}
		defer release()
		p := transport.NewPoll(user, maxPollMessages, maxPollBytes, topics)
		defer p.Close()
		detach, err := dr.attach(ctx, p, cursor, maxPollMessages)
		if err != nil {
			return err
		}
		rp = p.Replayed()
		if pollMustWait(cursor, wait, rp, topics) {
			t := time.NewTimer(wait)
			select {
			case <-p.Ready():
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		detach()
		live, drained, after := p.Take()
		var reconnect *transport.Reconnect
		if drained {
			reconnect = &transport.Reconnect{Type: "reconnect", Reason: "draining", AfterMS: after.Milliseconds()}
		}
		return writePoll(c, rp, live, topics, reconnect)
	}
}

// pollMustWait: there is nothing to answer yet, and the client asked to wait for it.
// The replay is judged through the subscription: messages it leaves out do not end a
// wait, though the cursor moves past them.
func pollMustWait(cursor string, wait time.Duration, rp *presence.Replay, topics *presence.Topics) bool {
	return cursor != "" && wait > 0 && rp.Reset == "" && !rp.More && !slices.ContainsFunc(rp.Messages, func(d presence.Delivery) bool { return topics.Wants(d.M) })
}

// writePoll answers a poll: the replayed messages, then (unless the replay stopped at
// its limit: what came live is after a gap, and the next poll reads it) the live ones,
// through the subscription; and the cursor after all of them, the ones left out too.
func writePoll(c echo.Context, rp *presence.Replay, live []presence.Delivery, topics *presence.Topics, reconnect *transport.Reconnect) error {
	all := rp.Messages
	if !rp.More {
		all = append(all, live[:min(len(live), maxPollMessages-len(all))]...)
	}
	tail := transport.PollTail{Cursor: pollCursor(all, rp), Reset: rp.Reset != "", Reason: rp.Reset, Reconnect: reconnect}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, transport.PollAnswer(topics.Filter(all), tail))
}

// pollCursor is where the next poll starts: after the last message given, else where
// the replay left the connection (the tops, for a new or unusable cursor).
func pollCursor(msgs []presence.Delivery, rp *presence.Replay) string {
	if len(msgs) > 0 {
		return msgs[len(msgs)-1].At.String()
	}
	return rp.Head.String()
}

// pollHold is how long a poll waits: what the client asked for, but no longer than a
// heartbeat. A waiting poll is what holds a poll client in the hub and the presence
// map, and a client that froze mid-poll (SIGSTOP, a suspended laptop) cannot be told
// from one that waits: its kernel still ACKs. Ending every wait within a heartbeat
// lets its presence lapse within one, as the frozen WebSocket's and SSE stream's does
// within two; with the default heartbeat (25 s, PollWait) nothing changes.
func pollHold(wait, heartbeat time.Duration) time.Duration {
	if heartbeat > 0 {
		return min(wait, heartbeat)
	}
	return wait
}

// pollWait reads ?wait=: a duration ("2s") or whole seconds, at most PollWait.
func pollWait(v string) (time.Duration, error) {
	if v == "" {
		return PollWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, &Error{Status: http.StatusBadRequest, Msg: "wait must be a duration like 10s, or seconds"}
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > PollWait {
		return 0, &Error{Status: http.StatusBadRequest, Msg: "wait must be between 0 and " + PollWait.String()}
	}
	return d, nil
}
