package presence

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Recent returns the n newest messages user's connections read — the user's and the
// broadcasts — oldest first (by the time they were recorded), for a person looking
// (pushbridge inspect). With user empty, only broadcasts.
func (h *RedisHistory) Recent(ctx context.Context, user string, n int) ([]*Message, error) {
	if n <= 0 {
		return nil, nil
	}
	owners := []string{""}
	if user != "" {
		owners = append(owners, user)
	}
	cmds := make([]*redis.XMessageSliceCmd, len(owners))
	epochs := make([]*redis.StringCmd, len(owners))
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, o := range owners {
			cmds[i] = p.XRevRangeN(ctx, h.keys.stream(o), "+", "-", int64(n))
			epochs[i] = p.HGet(ctx, h.keys.meta(o), "e")
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("history recent: %w", err)
	}
	var all []*Message
	for i, cmd := range cmds {
		for _, x := range cmd.Val() {
			seq, err := strconv.ParseUint(strings.TrimSuffix(x.ID, "-0"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("history recent: entry id %q: %w", x.ID, err)
			}
			fields := make([]any, 0, 2*len(x.Values))
			for k, v := range x.Values {
				fields = append(fields, k, v)
			}
			all = append(all, entryMessage(owners[i], epochs[i].Val(), seq, fields))
		}
	}
	slices.SortStableFunc(all, func(a, b *Message) int { return cmp.Compare(a.Time, b.Time) })
	return all[max(0, len(all)-n):], nil
}
