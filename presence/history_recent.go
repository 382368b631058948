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
	var runs [2][]seqMessage // each oldest first
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
			runs[i] = append(runs[i], seqMessage{seq: seq, m: &Message{ID: FormatCursor(seq), UserID: owner, RoutingKey: rk, Body: []byte(body)}})
		}
		slices.Reverse(runs[i]) // XREVRANGE reads newest first
	}
	all := mergeStreams(runs[0], runs[1], len(runs[0])+len(runs[1]))
	return all[max(0, len(all)-n):], nil
}
