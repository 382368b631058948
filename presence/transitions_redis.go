package presence

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Transitions = (*RedisTransitions)(nil)

// claimBatch is how many due users one beat claims at most: a mass disconnect is
// announced over a few beats rather than in one beat that outlives its tick.
const claimBatch = 1000

// transitionsTimeout bounds the Redis calls of Close, which has no context of its own.
const transitionsTimeout = 5 * time.Second

// RedisTransitions is Transitions for many instances sharing Redis: whether a user is
// online is decided in Redis, in scripts of the user's slot, so one event is sent per
// transition whatever the number of instances that saw it (docs/events.md, "Across
// instances").
//
// Per user, the hash <P>{u:<user>}:on holds s ("on" or missing: the last event
// announced), g (while an offline is pending: the grace deadline, ms), n (the number of
// events announced) and h:<instance> for every instance holding the user. A holder
// counts while its lease in the user's meta (the directory's i:<instance>) is live: a
// crashed instance stops counting with its lease. A user whose last connection went is
// put in the sorted set <P>{r}:offline-due at the grace deadline; every instance's
// beat claims the due ones, and the claim script, one at a time per slot, lets exactly
// one instance announce user.offline. An instance lists the users it holds in
// <P>{i:<instance>}:held, so survivors can put a crashed instance's users in the due
// set.
type RedisTransitions struct {
	rdb      redis.UniversalClient
	keys     redisKeys
	instance string
	ttl      time.Duration
	grace    time.Duration
	metaTTL  time.Duration
	events   Events
	log      *slog.Logger
	now      func() time.Time
	seed     maphash.Seed
	stripes  [dirStripes]transStripe

	closeMu sync.RWMutex // Close excludes Connected and Disconnected
	closed  bool

	beatMu  sync.Mutex // one Beat at a time
	touched time.Time  // when Beat last pushed the life of the local users' keys
}

// transStripe holds the connections of some users on this instance. Its lock is held
// across a user's Redis calls, so they reach Redis in the order they happened here.
type transStripe struct {
	mu    sync.Mutex
	conns map[string]int
	dirty map[string]bool // a script failed: the next Beat runs it again
	kind  map[string]string
}

// NewRedisTransitions sends the events of opts.Instance's connections to events,
// user.offline after grace.
func NewRedisTransitions(rdb redis.UniversalClient, opts RedisOptions, grace time.Duration, events Events, log *slog.Logger) *RedisTransitions {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	t := &RedisTransitions{
		rdb: rdb, keys: redisKeys(opts.Prefix), instance: opts.Instance, ttl: opts.PresenceTTL,
		grace: grace, metaTTL: metaTTL(opts.HistoryTTL), events: events, log: log, now: time.Now,
		seed: maphash.MakeSeed(),
	}
	for i := range t.stripes {
		t.stripes[i] = transStripe{conns: make(map[string]int), dirty: make(map[string]bool), kind: make(map[string]string)}
	}
	return t
}

// online is the hash of a user's online state, in the user's slot.
func (k redisKeys) online(user string) string { return k.tag(user) + ":on" }

// offlineDue is the sorted set of users whose offline may be due, by when.
func (k redisKeys) offlineDue() string { return string(k) + "{r}:offline-due" }

// held is the set of users an instance holds, in a slot of the instance's.
func (k redisKeys) held(instance string) string { return string(k) + "{i:" + instance + "}:held" }

// holdersLua counts the live holders of a user: h:<instance> fields of the state hash
// (KEYS[1]) whose lease in the meta (KEYS[2]) is live at now with grace lg, leaving out
// the instance skip and the instances in the set dead. A holder without a live lease
// is forgotten.
const holdersLua = leaseLua + `
local function holders(now, lg, skip, dead)
  local n = 0
  local all = redis.call('HKEYS', KEYS[1])
  for _, f in ipairs(all) do
    local inst = string.match(f, '^h:(.*)$')
    if inst and inst ~= skip then
      local v = redis.call('HGET', KEYS[2], 'i:' .. inst)
      local d = v and deadline(v)
      if dead[inst] or not d or d + lg < now then
        redis.call('HDEL', KEYS[1], f)
      else
        n = n + 1
      end
    end
  end
  return n
end
`

// connectScript records instance ARGV[1] as holding the user and says whether that
// makes the user online. KEYS: state, meta. ARGV: instance, meta TTL ms, now ms.
// Returns the user's event number to announce user.online with, or 0: nothing. A new
// state starts numbering at now: above whatever a lost one (expired, a Redis restarted
// empty) had reached, as long as a user makes fewer than one event per ms.
var connectScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], '1')
redis.call('HDEL', KEYS[1], 'g')
local was = redis.call('HGET', KEYS[1], 's')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if was == 'on' then return 0 end
redis.call('HSET', KEYS[1], 's', 'on')
redis.call('HSETNX', KEYS[1], 'n', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'n', 1)
`)

// disconnectScript records that instance ARGV[1] holds the user no more; when nobody
// does, it starts the grace. KEYS: state, meta. ARGV: instance, now ms, lease grace
// ms, offline grace ms. Returns the grace deadline (ms) to put the user in the due set
// at, or 0: nothing to do.
var disconnectScript = redis.NewScript(holdersLua + `
redis.call('HDEL', KEYS[1], 'h:' .. ARGV[1])
if redis.call('HGET', KEYS[1], 's') ~= 'on' then return 0 end
local now = tonumber(ARGV[2])
if holders(now, tonumber(ARGV[3]), ARGV[1], {}) > 0 then return 0 end
local g = now + tonumber(ARGV[4]) + 1 -- now was cut to the ms: never a claim before the grace
redis.call('HSET', KEYS[1], 'g', g)
return g
`)

// claimScript decides a due user's offline. KEYS: state, meta. ARGV: now ms, lease
// grace ms, dead instances (comma-separated). Returns {1, event number}: announce
// user.offline; {0, 0}: nothing (offline already, or held again); {2, deadline ms}: not
// due until then.
var claimScript = redis.NewScript(holdersLua + `
if redis.call('HGET', KEYS[1], 's') ~= 'on' then
  redis.call('HDEL', KEYS[1], 'g')
  return {0, 0}
end
local dead = {}
for inst in string.gmatch(ARGV[3], '[^,]+') do dead[inst] = true end
local now = tonumber(ARGV[1])
if holders(now, tonumber(ARGV[2]), '', dead) > 0 then return {0, 0} end
local g = tonumber(redis.call('HGET', KEYS[1], 'g'))
if g and g > now then return {2, g} end
redis.call('HSET', KEYS[1], 's', 'off')
redis.call('HDEL', KEYS[1], 'g')
return {1, redis.call('HINCRBY', KEYS[1], 'n', 1)}
`)

// undueScript removes a claimed member from the due set unless it was put back later
// than it was taken. KEYS: due set. ARGV: member, the score it was taken with.
var undueScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

func (t *RedisTransitions) stripe(user string) *transStripe {
	return &t.stripes[maphash.String(t.seed, user)%dirStripes]
}

func (t *RedisTransitions) Connected(ctx context.Context, user, transport string) {
	t.withStripe(user, func(s *transStripe) {
		s.conns[user]++
		s.kind[user] = transport
		if s.conns[user] == 1 || s.dirty[user] {
			t.sync(ctx, s, user)
		}
	})
}

func (t *RedisTransitions) Disconnected(ctx context.Context, user string) {
	t.withStripe(user, func(s *transStripe) {
		if s.conns[user] == 0 {
			return
		}
		if s.conns[user]--; s.conns[user] > 0 {
			return
		}
		delete(s.conns, user)
		delete(s.kind, user)
		t.sync(ctx, s, user)
	})
}

// withStripe runs fn with user's stripe locked, unless Close ran: Close waits for it.
func (t *RedisTransitions) withStripe(user string, fn func(s *transStripe)) {
	t.closeMu.RLock()
	defer t.closeMu.RUnlock()
	if t.closed {
		return
	}
	s := t.stripe(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// sync tells Redis whether this instance holds user, as s says, and announces what
// the script decides; s.mu is held. A failure leaves user dirty for the next Beat.
func (t *RedisTransitions) sync(ctx context.Context, s *transStripe, user string) {
	var err error
	if s.conns[user] > 0 {
		err = t.hold(ctx, user, s.kind[user])
	} else {
		err = t.release(ctx, user)
	}
	if err != nil {
		s.dirty[user] = true
		t.log.Warn("user.online/user.offline: retried with the next beat", "user", user, "err", err)
		return
	}
	delete(s.dirty, user)
}

// hold lists user among this instance's and records it as a holder; user.online when
// it is the first anywhere.
func (t *RedisTransitions) hold(ctx context.Context, user, transport string) error {
	if err := t.rdb.SAdd(ctx, t.keys.held(t.instance), user).Err(); err != nil {
		return fmt.Errorf("hold %s: %w", user, err)
	}
	n, err := connectScript.Run(ctx, t.rdb, []string{t.keys.online(user), t.keys.meta(user)},
		t.instance, t.metaTTL.Milliseconds(), t.now().UnixMilli()).Int64()
	if err != nil {
		return fmt.Errorf("hold %s: %w", user, err)
	}
	if n > 0 {
		t.events.Emit(Event{Type: EventOnline, User: user, At: t.now(), Transport: transport, Seq: uint64(n)})
	}
	return nil
}

// release records that this instance holds user no more; when nobody does, user is
// due at the end of the grace. Only then is user unlisted here: a crash before that
// leaves it for the survivors.
func (t *RedisTransitions) release(ctx context.Context, user string) error {
	g, err := disconnectScript.Run(ctx, t.rdb, []string{t.keys.online(user), t.keys.meta(user)},
		t.instance, t.now().UnixMilli(), leaseGrace(t.ttl).Milliseconds(), t.grace.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("release %s: %w", user, err)
	}
	if g > 0 {
		if err := t.rdb.ZAdd(ctx, t.keys.offlineDue(), redis.Z{Score: float64(g), Member: user}).Err(); err != nil {
			return fmt.Errorf("release %s: %w", user, err)
		}
	}
	if err := t.rdb.SRem(ctx, t.keys.held(t.instance), user).Err(); err != nil {
		return fmt.Errorf("release %s: %w", user, err)
	}
	return nil
}

// Close lets go of every user still held here, as if their connections closed: the
// surviving instances announce user.offline after the grace, unless the users came
// back to one of them. With no instance left, nobody does until one starts.
func (t *RedisTransitions) Close() {
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), transitionsTimeout)
	defer cancel()
	for i := range t.stripes {
		s := &t.stripes[i]
		s.mu.Lock()
		for u := range s.conns {
			delete(s.conns, u)
			delete(s.kind, u)
			s.dirty[u] = true
		}
		for u := range s.dirty { // and the releases that failed before
			t.sync(ctx, s, u)
		}
		s.mu.Unlock()
	}
}
