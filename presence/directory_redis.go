package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Directory = (*RedisDirectory)(nil)

// dirStripes spreads the directory's writes over independent locks: the writes for
// one user must reach Redis in order, but a reconnect storm of thousands of users
// should not queue behind a single lock.
const dirStripes = 64

// RedisDirectory is this instance's part of the shared presence, kept by user: in
// each connected user's meta hash (the one every message to the user touches) a field
// i:<instance> = "<lease deadline ms> <JSON [{transport, since}]>". The dispatch
// script reads the live ones in the same step as it appends, so a targeted message
// costs the same whatever the number of instances (docs/redis.md, "Presence by user,
// and how it heals").
//
// The connections of this instance are also kept here, in memory: they are the truth
// that Refresh writes back whole with every beat, whatever Redis holds — never "the
// key exists, so all is well".
type RedisDirectory struct {
	rdb      redis.UniversalClient
	keys     redisKeys
	instance string
	ttl      time.Duration
	metaTTL  time.Duration
	now      func() time.Time
	seed     maphash.Seed
	stripes  [dirStripes]dirStripe
}

type dirStripe struct {
	mu    sync.Mutex
	users map[string][]Entry
}

// connJSON is one connection in a user's presence field: readable with redis-cli.
type connJSON struct {
	Transport string    `json:"transport"`
	Since     time.Time `json:"since"`
}

// NewRedisDirectory returns the directory of instance opts.Instance, whose entries live
// opts.PresenceTTL past its last Refresh.
func NewRedisDirectory(rdb redis.UniversalClient, opts RedisOptions) *RedisDirectory {
	opts = opts.withDefaults()
	d := &RedisDirectory{
		rdb: rdb, keys: redisKeys(opts.Prefix), instance: opts.Instance, ttl: opts.PresenceTTL,
		metaTTL: metaTTL(opts.HistoryTTL), now: time.Now, seed: maphash.MakeSeed(),
	}
	for i := range d.stripes {
		d.stripes[i] = dirStripe{users: make(map[string][]Entry)}
	}
	return d
}

func (d *RedisDirectory) stripe(user string) *dirStripe {
	return &d.stripes[maphash.String(d.seed, user)%dirStripes]
}

// Add records e. Even when Redis fails (the error says so) e is kept here and written
// by the next Refresh: the connection exists either way.
func (d *RedisDirectory) Add(ctx context.Context, e Entry) error {
	if e.Instance != d.instance {
		return fmt.Errorf("directory add: connection of instance %q given to the directory of %q", e.Instance, d.instance)
	}
	s := d.stripe(e.User)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[e.User] = append(s.users[e.User], e)
	return d.writeUser(ctx, s, e.User)
}

func (d *RedisDirectory) Remove(ctx context.Context, e Entry) error {
	if e.Instance != d.instance {
		return fmt.Errorf("directory remove: connection of instance %q given to the directory of %q", e.Instance, d.instance)
	}
	s := d.stripe(e.User)
	s.mu.Lock()
	defer s.mu.Unlock()
	if es := removeEntry(s.users[e.User], e); len(es) == 0 {
		delete(s.users, e.User)
	} else {
		s.users[e.User] = es
	}
	return d.writeUser(ctx, s, e.User)
}

// writeUser writes user's field as s holds it; s.mu is held.
func (d *RedisDirectory) writeUser(ctx context.Context, s *dirStripe, user string) error {
	deadline := d.now().Add(d.ttl).UnixMilli()
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		d.queueUser(ctx, p, s, user, deadline)
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory write %s: %w", user, err)
	}
	return nil
}

// queueUser queues the write of user's presence field as s holds it, with a lease
// until deadline; s.mu is held. A write also pushes the meta's life: a user who is
// connected keeps the epoch of their stream.
func (d *RedisDirectory) queueUser(ctx context.Context, p redis.Pipeliner, s *dirStripe, user string, deadline int64) {
	meta, field := d.keys.meta(user), presenceField(d.instance)
	es := s.users[user]
	if len(es) == 0 {
		p.HDel(ctx, meta, field)
		return
	}
	p.HSet(ctx, meta, field, leaseValue(deadline, es))
	p.PExpire(ctx, meta, d.metaTTL)
}

// leaseValue is a presence field's value: "<deadline ms> <JSON [{transport, since}]>".
func leaseValue(deadline int64, es []Entry) string {
	cs := make([]connJSON, len(es))
	for i, e := range es {
		cs[i] = connJSON{Transport: e.Transport, Since: e.Since.UTC()}
	}
	b, _ := json.Marshal(cs) // cannot fail: strings and times
	return strconv.FormatInt(deadline, 10) + " " + string(b)
}

// Tops are the newest positions of the streams this instance's connections read, as
// a beat found them: what every connection should have reached (see Hub.Heal).
type Tops struct {
	At    time.Time      // when they were read; connections newer than this are not judged
	Users map[string]Pos // per local user
	Bcast Pos
}

// Refresh rewrites every presence field of this instance with a new lease, whatever
// Redis holds (it may have lost them: a restart, a deletion, a lease that ran out
// while Redis was paused), and reads the tops of the streams its connections read:
// call it with every heartbeat, and heal the connections with what it returns.
func (d *RedisDirectory) Refresh(ctx context.Context) (Tops, error) {
	tops := Tops{At: d.now(), Users: make(map[string]Pos)}
	bc := d.rdb.HMGet(ctx, d.keys.meta(""), "e", "s")
	if err := bc.Err(); err != nil {
		return Tops{}, fmt.Errorf("directory refresh: %w", err)
	}
	tops.Bcast = metaPos(bc.Val())
	deadline := tops.At.Add(d.ttl).UnixMilli()
	for i := range d.stripes {
		if err := d.refreshStripe(ctx, &d.stripes[i], deadline, tops.Users); err != nil {
			return Tops{}, err
		}
	}
	return tops, nil
}

// refreshStripe rewrites the users of s and reads their tops into tops, in one
// pipeline under s.mu, so a Remove meanwhile cannot be undone by a stale rewrite.
func (d *RedisDirectory) refreshStripe(ctx context.Context, s *dirStripe, deadline int64, tops map[string]Pos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.users) == 0 {
		return nil
	}
	reads := make(map[string]*redis.SliceCmd, len(s.users))
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for u := range s.users {
			d.queueUser(ctx, p, s, u, deadline)
			reads[u] = p.HMGet(ctx, d.keys.meta(u), "e", "s")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory refresh: %w", err)
	}
	for u, r := range reads {
		tops[u] = metaPos(r.Val())
	}
	return nil
}

// metaPos reads an HMGET meta e s reply: the stream's top (Epoch "" when it has none).
func metaPos(v []any) Pos {
	if len(v) != 2 {
		return Pos{}
	}
	e, _ := v[0].(string)
	s, _ := v[1].(string)
	n, _ := strconv.ParseUint(s, 10, 64)
	if e == "" {
		return Pos{}
	}
	return Pos{Epoch: e, Seq: n}
}

func (d *RedisDirectory) Lookup(ctx context.Context, user string) ([]Entry, error) {
	all, err := d.rdb.HGetAll(ctx, d.keys.meta(user)).Result()
	if err != nil {
		return nil, fmt.Errorf("directory lookup %s: %w", user, err)
	}
	live := d.now().Add(-leaseGrace(d.ttl)).UnixMilli()
	var out []Entry
	for f, v := range all {
		inst, ok := strings.CutPrefix(f, "i:")
		if !ok {
			continue
		}
		deadline, js, ok := splitLease(v)
		if !ok {
			return nil, fmt.Errorf("directory lookup %s: instance %s: malformed value %q", user, inst, v)
		}
		if deadline < live {
			continue
		}
		var cs []connJSON
		if err := json.Unmarshal([]byte(js), &cs); err != nil {
			return nil, fmt.Errorf("directory lookup %s: instance %s: %w", user, inst, err)
		}
		for _, c := range cs {
			out = append(out, Entry{User: user, Instance: inst, Transport: c.Transport, Since: c.Since})
		}
	}
	sortEntries(out)
	return out, nil
}

// Users counts each live instance's users as it reported them at its last beat (see
// Instance.Users): counting them here would read every user's entry.
func (d *RedisDirectory) Users(ctx context.Context) (map[string]int, error) {
	list, err := (&RedisInstances{rdb: d.rdb, keys: d.keys, ttl: d.ttl, now: d.now}).List(ctx)
	if err != nil {
		return nil, fmt.Errorf("directory users: %w", err)
	}
	out := make(map[string]int, len(list))
	for _, in := range list {
		if in.Users > 0 {
			out[in.ID] = in.Users
		}
	}
	return out, nil
}

// LocalUsers is the number of distinct users connected to this instance.
func (d *RedisDirectory) LocalUsers() int {
	n := 0
	for i := range d.stripes {
		s := &d.stripes[i]
		s.mu.Lock()
		n += len(s.users)
		s.mu.Unlock()
	}
	return n
}
