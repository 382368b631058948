package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The heartbeat's side of RedisTransitions: resyncing after a lapse, handing a crashed
// instance's users to the due set, and claiming the due offlines.

// Beat is the transitions' part of a heartbeat: after a lapse (lapsed: this instance
// was out of presence, and may have been announced offline), it holds every local user
// again; it hands the users of crashed instances to the due set, and claims the due
// users, announcing user.offline for those it wins. Call it with every beat, after the
// directory's refresh.
func (t *RedisTransitions) Beat(ctx context.Context, lapsed bool) error {
	t.beatMu.Lock()
	defer t.beatMu.Unlock()
	if err := t.resync(ctx, lapsed); err != nil {
		return err
	}
	dead, err := t.collectDead(ctx)
	if err != nil {
		return err
	}
	return t.claim(ctx, dead)
}

// resync runs again the scripts that failed, or every local user's after a lapse, and
// pushes the life of the local users' keys now and then (a user may stay online
// longer than a state hash lives untouched).
func (t *RedisTransitions) resync(ctx context.Context, all bool) error {
	touch := t.now().Sub(t.touched) >= t.metaTTL/4
	kept, err := t.rdb.PExpire(ctx, t.keys.held(t.instance), t.metaTTL).Result()
	if err != nil {
		return fmt.Errorf("transitions beat: %w", err)
	}
	if !kept && t.holdsAny() {
		// The set of the users held here is gone while some are: a survivor took this
		// instance for dead (a late beat, clocks apart) and handed them to the due
		// set, or Redis lost it. Hold every one again: user.online for those that
		// were announced offline meanwhile.
		all = true
	}
	for i := range t.stripes {
		s := &t.stripes[i]
		s.mu.Lock()
		for u := range s.dirty {
			t.sync(ctx, s, u)
		}
		if all {
			for u := range s.conns {
				t.sync(ctx, s, u)
			}
		}
		var err error
		if touch && len(s.conns) > 0 {
			_, err = t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for u := range s.conns {
					p.PExpire(ctx, t.keys.online(u), t.metaTTL)
				}
				return nil
			})
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("transitions beat: %w", err)
		}
	}
	if touch {
		t.touched = t.now()
	}
	return nil
}

// crashGrace is how long past its lease's deadline an instance is still not taken for
// crashed here: a tenth of the TTL for clocks apart and a beat a little late, where the
// data plane trusts a lease TTL/2 longer (leaseGrace). A crashed instance's users are
// then announced within BRIDGE_PRESENCE_TTL + BRIDGE_OFFLINE_GRACE + one beat of the
// crash (when the grace is at least TTL/10). An instance taken for dead by mistake
// finds its held set gone at its next beat and holds its users again (resync).
func crashGrace(ttl time.Duration) time.Duration { return ttl / 10 }

// collectDead lists the instances the registry holds as dead (their lease plus
// crashGrace passed), and moves the users each held into the due set, due at the
// lease's deadline plus the grace: the grace counts from when the instance was last
// known to hold them, so the claim of this very beat may announce them. Several
// survivors may do it at once: a member added twice is one member.
func (t *RedisTransitions) collectDead(ctx context.Context) ([]string, error) {
	all, err := t.rdb.HGetAll(ctx, t.keys.registry()).Result()
	if err != nil {
		return nil, fmt.Errorf("transitions beat: %w", err)
	}
	now := t.now()
	live := now.Add(-crashGrace(t.ttl)).UnixMilli()
	var dead []string
	for id, v := range all {
		d, _, ok := splitLease(v)
		if !ok || d >= live || id == t.instance {
			continue
		}
		dead = append(dead, id)
		due := float64(d + t.grace.Milliseconds())
		users, err := t.rdb.SMembers(ctx, t.keys.held(id)).Result()
		if err != nil {
			return nil, fmt.Errorf("transitions beat: users of %s: %w", id, err)
		}
		if len(users) == 0 {
			continue
		}
		zs := make([]redis.Z, len(users))
		for i, u := range users {
			zs[i] = redis.Z{Score: due, Member: u}
		}
		// NX: a user already due keeps its earlier deadline.
		if err := t.rdb.ZAddNX(ctx, t.keys.offlineDue(), zs...).Err(); err != nil {
			return nil, fmt.Errorf("transitions beat: users of %s: %w", id, err)
		}
		if err := t.rdb.Del(ctx, t.keys.held(id)).Err(); err != nil {
			return nil, fmt.Errorf("transitions beat: users of %s: %w", id, err)
		}
		t.log.Info("instance gone: its users are due offline", "gone", id, "users", len(users))
	}
	return dead, nil
}

// claim runs the claim script for each due user, announcing user.offline for those
// this instance wins.
func (t *RedisTransitions) claim(ctx context.Context, dead []string) error {
	now := t.now().UnixMilli()
	due, err := t.rdb.ZRangeByScoreWithScores(ctx, t.keys.offlineDue(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now, 10), Count: claimBatch,
	}).Result()
	if err != nil {
		return fmt.Errorf("transitions claim: %w", err)
	}
	deadArg := strings.Join(dead, ",")
	for _, z := range due {
		user, _ := z.Member.(string)
		r, err := claimScript.Run(ctx, t.rdb, []string{t.keys.online(user), t.keys.meta(user)},
			now, leaseGrace(t.ttl).Milliseconds(), deadArg).Int64Slice()
		if err != nil || len(r) != 2 {
			return fmt.Errorf("transitions claim %s: %v %w", user, r, err)
		}
		switch r[0] {
		case 1:
			t.events.Emit(Event{Type: EventOffline, User: user, At: t.now(), Seq: uint64(r[1])})
		case 2: // a later grace: due then
			if err := t.rdb.ZAddGT(ctx, t.keys.offlineDue(), redis.Z{Score: float64(r[1]), Member: user}).Err(); err != nil {
				return fmt.Errorf("transitions claim %s: %w", user, err)
			}
			continue
		}
		if err := undueScript.Run(ctx, t.rdb, []string{t.keys.offlineDue()}, user, z.Score).Err(); err != nil && err != redis.Nil {
			return fmt.Errorf("transitions claim %s: %w", user, err)
		}
	}
	return nil
}

// holdsAny reports whether some user is held here.
func (t *RedisTransitions) holdsAny() bool {
	for i := range t.stripes {
		s := &t.stripes[i]
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}
