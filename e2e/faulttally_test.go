package e2e_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// everyone is the target of a fault test's broadcasts.
const everyone = "*"

// loadBody is what every message of a fault test carries: its target (a user, or
// everyone for a broadcast), its sequence number among that target's messages, and
// when it was published.
type loadBody struct {
	User  string `json:"receiveUserId,omitempty"` // targeted: routes it
	To    string `json:"to,omitempty"`            // broadcast: everyone
	Seq   int    `json:"seq"`
	T     int64  `json:"t"` // unix ms at publish
	Fence bool   `json:"fence,omitempty"`
}

func (b loadBody) target() string {
	if b.User != "" {
		return b.User
	}
	return b.To
}

type msgKey struct {
	target string
	seq    int
}

// tally is what one client's page saw, by content: ids are opaque and may change
// format, so loss, duplicates and order are judged by (target, seq) alone.
type tally struct {
	user         string
	got          map[msgKey]int // content -> times handed to the page
	maxSeq       map[string]int // per target, the highest seq so far
	reordered    int            // arrivals below their target's highest seq so far
	wireRepeats  int            // messages whose id the page had delivered already (bridge.js drops them)
	misdelivered int            // another user's message
	fences       int
	resets       []string
	resetAt      []time.Time // when each reset arrived
	strays       []string    // undecodable frames or bodies

	mark       time.Time // the fault's end, set by the rig
	firstAfter time.Time // arrival of the first own message published at or after mark
}

func newTally(user string) tally {
	return tally{user: user, got: map[msgKey]int{}, maxSeq: map[string]int{}}
}

func (t *tally) message(data json.RawMessage, raw []byte) {
	var b loadBody
	if err := json.Unmarshal(data, &b); err != nil || b.target() == "" {
		t.strays = append(t.strays, "unexpected message: "+string(raw))
		return
	}
	if b.Fence {
		t.fences++
		return
	}
	target := b.target()
	if target != t.user && target != everyone {
		t.misdelivered++
		return
	}
	k := msgKey{target, b.Seq}
	t.got[k]++
	if t.got[k] > 1 {
		return
	}
	if m, ok := t.maxSeq[target]; ok && b.Seq < m {
		t.reordered++
	} else {
		t.maxSeq[target] = b.Seq
	}
	if target == t.user && !t.mark.IsZero() && t.firstAfter.IsZero() && b.T >= t.mark.UnixMilli() {
		t.firstAfter = time.Now()
	}
}

func (t tally) clone() tally {
	c := t
	c.got, c.maxSeq = maps.Clone(t.got), maps.Clone(t.maxSeq)
	c.resets, c.resetAt, c.strays = slices.Clone(t.resets), slices.Clone(t.resetAt), slices.Clone(t.strays)
	return c
}

// expected is what a client should have got: its own messages 0..targeted-1 and the
// broadcasts bFrom..bTo-1; times says when each was published.
type expected struct {
	targeted   int
	bFrom, bTo int
	times      map[msgKey]int64
}

// counts is the verdict on one client.
type counts struct {
	expected, got          int
	lost, silent, dup      int
	reordered, wireRepeats int
	misdelivered, resets   int
	strays                 int
	resumeAfter            time.Duration // from the fault's end to its first new own message; -1: never
	firstLost, lastLost    string
}

func (t tally) count(e expected) counts {
	c := counts{expected: e.targeted + e.bTo - e.bFrom, reordered: t.reordered, wireRepeats: t.wireRepeats,
		misdelivered: t.misdelivered, resets: len(t.resets), strays: len(t.strays), resumeAfter: -1}
	// A reset tells the client that what was published before it may be missing; a
	// message lost with no reset arriving after its publication was lost silently
	// (stricter than "no reset at all": a reset does not excuse what is lost later).
	var lastReset int64 = -1
	for _, at := range t.resetAt {
		lastReset = max(lastReset, at.UnixMilli())
	}
	check := func(k msgKey) {
		switch n := t.got[k]; {
		case n == 0:
			c.lost++
			if pt, ok := e.times[k]; !ok || pt > lastReset {
				c.silent++
			}
			if c.firstLost == "" {
				c.firstLost = fmt.Sprintf("%s#%d", k.target, k.seq)
			}
			c.lastLost = fmt.Sprintf("%s#%d", k.target, k.seq)
		default:
			c.got++
			c.dup += n - 1
		}
	}
	for s := range e.targeted {
		check(msgKey{t.user, s})
	}
	for s := e.bFrom; s < e.bTo; s++ {
		check(msgKey{everyone, s})
	}
	// Anything beyond what was published is a stray. (Broadcasts before bFrom are
	// fine: published while a late client attached, it may or may not get them.)
	for k, n := range t.got {
		if (k.target == t.user && k.seq >= e.targeted) || (k.target == everyone && k.seq >= e.bTo) {
			c.strays += n
		}
	}
	if !t.firstAfter.IsZero() && !t.mark.IsZero() {
		c.resumeAfter = t.firstAfter.Sub(t.mark)
	}
	return c
}

// table renders the counts of every client, and the totals, for t.Logf.
func table(names []string, cs []counts) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %7s %7s %6s %6s %5s %6s %6s %6s %6s %9s  %s\n",
		"client", "expect", "got", "lost", "silent", "dup", "reord", "idrep", "resets", "misdlv", "resumed", "lost range")
	var sum counts
	for i, c := range cs {
		resumed := "never"
		if c.resumeAfter >= 0 {
			resumed = c.resumeAfter.Round(10 * time.Millisecond).String()
		}
		lost := ""
		if c.lost > 0 {
			lost = c.firstLost + " .. " + c.lastLost
		}
		fmt.Fprintf(&b, "%-14s %7d %7d %6d %6d %5d %6d %6d %6d %6d %9s  %s\n", names[i],
			c.expected, c.got, c.lost, c.silent, c.dup, c.reordered, c.wireRepeats, c.resets, c.misdelivered, resumed, lost)
		sum.expected += c.expected
		sum.got += c.got
		sum.lost += c.lost
		sum.silent += c.silent
		sum.dup += c.dup
		sum.reordered += c.reordered
		sum.wireRepeats += c.wireRepeats
		sum.resets += c.resets
		sum.misdelivered += c.misdelivered
	}
	fmt.Fprintf(&b, "%-14s %7d %7d %6d %6d %5d %6d %6d %6d %6d\n", "TOTAL",
		sum.expected, sum.got, sum.lost, sum.silent, sum.dup, sum.reordered, sum.wireRepeats, sum.resets, sum.misdelivered)
	return b.String()
}
