package presence

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Recent returns the n newest messages user's connections read — the user's and the
// broadcasts — oldest first, for a person looking (pushbridge inspect). With user
// empty, only broadcasts.
func (h *RedisHistory) Recent(ctx context.Context, user string, n int) ([]*Message, error) {
	if n <= 0 {
		return nil, nil
	}
	streams := []string{h.keys.broadcastStream()}
	if user != "" {
		streams = append(streams, h.keys.userStream(user))
	}
	cmds := make([]*redis.XMessageSliceCmd, len(streams))
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range streams {
			cmds[i] = p.XRevRangeN(ctx, s, "+", "-", int64(n))
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("history recent: %w", err)
	}
	var all []seqMessage
	for i, cmd := range cmds {
		owner := ""
		if i == 1 {
			owner = user
		}
		for _, x := range cmd.Val() {
			seq, err := strconv.ParseUint(strings.TrimSuffix(x.ID, "-0"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("history recent: entry id %q: %w", x.ID, err)
			}
			rk, _ := x.Values["routingKey"].(string)
			body, _ := x.Values["body"].(string)
			all = append(all, seqMessage{seq: seq, m: &Message{ID: FormatCursor(seq), UserID: owner, RoutingKey: rk, Body: []byte(body)}})
		}
	}
	slices.SortFunc(all, func(a, b seqMessage) int { return cmpUint(a.seq, b.seq) })
	all = all[max(0, len(all)-n):]
	out := make([]*Message, len(all))
	for i, s := range all {
		out[i] = s.m
	}
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
