package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Directory = (*RedisDirectory)(nil)

// dirStripes spreads the directory's writes over independent locks: the writes for
// one user must reach Redis in order, but a reconnect storm of thousands of users
// should not queue behind a single lock.
const dirStripes = 64

// RedisDirectory is this instance's part of the shared directory. Each instance owns
// one hash, user -> that user's connections here, which expires with the instance's
// heartbeat: a crashed instance's connections vanish with nobody cleaning up, and a
// heartbeat costs one command however many users are connected. Lookup reads the
// user's field in the hash of every registered instance, in one script.
//
// The connections of this instance are also kept here, in memory: they are the truth
// that Refresh writes back when Redis lost the hash (a restart, a long outage) or a
// write failed.
type RedisDirectory struct {
	rdb      redis.UniversalClient
	keys     redisKeys
	instance string
	ttl      time.Duration
	seed     maphash.Seed
	stripes  [dirStripes]dirStripe
}

type dirStripe struct {
	mu    sync.Mutex
	users map[string][]Entry
	dirty map[string]bool // users whose last write to Redis failed
}

// connJSON is one connection in a user's field: readable with redis-cli.
type connJSON struct {
	Transport string    `json:"transport"`
	Since     time.Time `json:"since"`
}

// NewRedisDirectory returns the directory of instance opts.Instance, whose entries live
// opts.PresenceTTL past its last Refresh.
func NewRedisDirectory(rdb redis.UniversalClient, opts RedisOptions) *RedisDirectory {
	opts = opts.withDefaults()
	d := &RedisDirectory{rdb: rdb, keys: redisKeys(opts.Prefix), instance: opts.Instance, ttl: opts.PresenceTTL, seed: maphash.MakeSeed()}
	for i := range d.stripes {
		d.stripes[i] = dirStripe{users: make(map[string][]Entry), dirty: make(map[string]bool)}
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
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		d.queueUser(ctx, p, s, user)
		p.PExpire(ctx, d.keys.conns(d.instance), d.ttl)
		return nil
	})
	if err != nil {
		s.dirty[user] = true
		return fmt.Errorf("directory write %s: %w", user, err)
	}
	delete(s.dirty, user)
	return nil
}

func (d *RedisDirectory) queueUser(ctx context.Context, p redis.Pipeliner, s *dirStripe, user string) {
	es := s.users[user]
	if len(es) == 0 {
		p.HDel(ctx, d.keys.conns(d.instance), user)
		return
	}
	cs := make([]connJSON, len(es))
	for i, e := range es {
		cs[i] = connJSON{Transport: e.Transport, Since: e.Since.UTC()}
	}
	b, _ := json.Marshal(cs) // cannot fail: strings and times
	p.HSet(ctx, d.keys.conns(d.instance), user, b)
}

// RefreshLapsed keeps this instance's connections alive for another TTL; call it with
// every heartbeat. When Redis has lost them, or a write failed, it writes them again.
// It reports whether this instance's entries were gone from Redis (expired, or Redis
// lost them) when it came: until now, dispatchers did not send this instance its
// users' messages, which only the history holds.
func (d *RedisDirectory) RefreshLapsed(ctx context.Context) (lapsed bool, err error) {
	kept, err := d.rdb.PExpire(ctx, d.keys.conns(d.instance), d.ttl).Result()
	if err != nil {
		return false, fmt.Errorf("directory refresh: %w", err)
	}
	empty := true
	for i := range d.stripes {
		s := &d.stripes[i]
		s.mu.Lock()
		empty = empty && len(s.users) == 0
		s.mu.Unlock()
		if err := d.rewrite(ctx, s, !kept); err != nil {
			return false, err
		}
	}
	// An instance with no connections has no hash to keep: that is no lapse.
	return !kept && !empty, nil
}

// rewrite writes the users of s that failed before, or all of them.
func (d *RedisDirectory) rewrite(ctx context.Context, s *dirStripe, all bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	users := s.dirty
	if all {
		users = make(map[string]bool, len(s.users))
		for u := range s.users {
			users[u] = true
		}
	}
	if len(users) == 0 {
		return nil
	}
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for u := range users {
			d.queueUser(ctx, p, s, u)
		}
		p.PExpire(ctx, d.keys.conns(d.instance), d.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory rewrite: %w", err)
	}
	clear(s.dirty)
	return nil
}

// lookupScript returns instance id, connections JSON for each live instance that
// holds user. KEYS: instances set. ARGV: conns key prefix, user, instance key prefix.
var lookupScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HGET', ARGV[1] .. id, ARGV[2])
  if v and redis.call('EXISTS', ARGV[3] .. id) == 1 then
    out[#out + 1] = id
    out[#out + 1] = v
  end
end
return out
`)

func (d *RedisDirectory) Lookup(ctx context.Context, user string) ([]Entry, error) {
	vals, err := lookupScript.Run(ctx, d.rdb, []string{d.keys.instances()}, d.keys.conns(""), user, d.keys.instance("")).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("directory lookup %s: %w", user, err)
	}
	var out []Entry
	for i := 0; i+1 < len(vals); i += 2 {
		var cs []connJSON
		if err := json.Unmarshal([]byte(vals[i+1]), &cs); err != nil {
			return nil, fmt.Errorf("directory lookup %s: instance %s: %w", user, vals[i], err)
		}
		for _, c := range cs {
			out = append(out, Entry{User: user, Instance: vals[i], Transport: c.Transport, Since: c.Since})
		}
	}
	sortEntries(out)
	return out, nil
}

// usersScript returns instance id, number of users for each live instance that holds
// any. KEYS: instances set. ARGV: conns key prefix, instance key prefix.
var usersScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local n = redis.call('HLEN', ARGV[1] .. id)
  if n > 0 and redis.call('EXISTS', ARGV[2] .. id) == 1 then
    out[#out + 1] = id
    out[#out + 1] = tostring(n)
  end
end
return out
`)

func (d *RedisDirectory) Users(ctx context.Context) (map[string]int, error) {
	vals, err := usersScript.Run(ctx, d.rdb, []string{d.keys.instances()}, d.keys.conns(""), d.keys.instance("")).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("directory users: %w", err)
	}
	out := make(map[string]int, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		n, err := strconv.Atoi(vals[i+1])
		if err != nil {
			return nil, fmt.Errorf("directory users: instance %s: %w", vals[i], err)
		}
		out[vals[i]] = n
	}
	return out, nil
}
