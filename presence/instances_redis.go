package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Instances = (*RedisInstances)(nil)

// RedisInstances is the registry shared by every instance: one hash, a field per
// instance holding its lease deadline and what it reported at its last beat
// (docs/redis.md, "Presence by user"). Redis 7.0 has no per-field expiry, so a field
// carries its own deadline; readers skip fields past it, and beats prune the ones
// long dead.
type RedisInstances struct {
	rdb     redis.UniversalClient
	keys    redisKeys
	ttl     time.Duration
	metaTTL time.Duration
	now     func() time.Time
}

// NewRedisInstances returns the registry under opts.Prefix; an instance lives
// opts.PresenceTTL after its last beat (plus the lease grace, see leaseGrace).
func NewRedisInstances(rdb redis.UniversalClient, opts RedisOptions) *RedisInstances {
	opts = opts.withDefaults()
	return &RedisInstances{rdb: rdb, keys: redisKeys(opts.Prefix), ttl: opts.PresenceTTL, metaTTL: metaTTL(opts.HistoryTTL), now: time.Now}
}

// leaseGrace is how long past its deadline a lease is still taken as live: the
// deadline is the writer's clock, the reader's may be ahead. Skew costs at most a
// publish to a channel nobody listens on, never a missed one.
func leaseGrace(ttl time.Duration) time.Duration { return ttl / 2 }

// leaseLua is shared by the scripts that read leases: the deadline at the start of a
// field's value "<deadline ms> <json>".
const leaseLua = `
local function deadline(v) return tonumber(string.match(v, '^(%d+) ')) end
`

// beatScript renews one instance's lease and says whether it had lapsed (missing, or
// past its deadline: dispatchers may have skipped this instance), and prunes the
// fields of instances dead for longer than prune. KEYS: registry. ARGV: id, now ms,
// ttl ms, value JSON, prune ms. Returns 1 when the lease had lapsed.
var beatScript = redis.NewScript(leaseLua + `
local now = tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local lapsed = 1
if old then
  local d = deadline(old)
  if d and d >= now then lapsed = 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now + tonumber(ARGV[3])) .. ' ' .. ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local d = deadline(all[i + 1])
  if not d or d + tonumber(ARGV[5]) < now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return lapsed
`)

// instanceJSON is an instance's registry value after its deadline: readable with
// redis-cli.
type instanceJSON struct {
	Started time.Time `json:"started"`
	Conns   int       `json:"conns"`
	Users   int       `json:"users"`
}

func (r *RedisInstances) Beat(ctx context.Context, inst Instance) (bool, error) {
	if inst.ID == "" {
		return false, fmt.Errorf("instance beat: empty instance id")
	}
	v, _ := json.Marshal(instanceJSON{Started: inst.Started.UTC(), Conns: inst.Conns, Users: inst.Users}) // cannot fail
	lapsed, err := beatScript.Run(ctx, r.rdb, []string{r.keys.registry()},
		inst.ID, r.now().UnixMilli(), r.ttl.Milliseconds(), v, r.metaTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("instance beat: %w", err)
	}
	return lapsed == 1, nil
}

func (r *RedisInstances) Leave(ctx context.Context, id string) error {
	if err := r.rdb.HDel(ctx, r.keys.registry(), id).Err(); err != nil {
		return fmt.Errorf("instance leave: %w", err)
	}
	return nil
}

func (r *RedisInstances) List(ctx context.Context) ([]Instance, error) {
	all, err := r.rdb.HGetAll(ctx, r.keys.registry()).Result()
	if err != nil {
		return nil, fmt.Errorf("instance list: %w", err)
	}
	live := r.now().Add(-leaseGrace(r.ttl)).UnixMilli()
	out := make([]Instance, 0, len(all))
	for id, v := range all {
		d, js, ok := splitLease(v)
		if !ok {
			return nil, fmt.Errorf("instance list: %s: malformed value %q", id, v)
		}
		if d < live {
			continue
		}
		var x instanceJSON
		if err := json.Unmarshal([]byte(js), &x); err != nil {
			return nil, fmt.Errorf("instance list: %s: %w", id, err)
		}
		out = append(out, Instance{ID: id, Started: x.Started, Conns: x.Conns, Users: x.Users})
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// splitLease reads a lease value "<deadline ms> <json>".
func splitLease(v string) (deadline int64, js string, ok bool) {
	d, js, ok := strings.Cut(v, " ")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.ParseInt(d, 10, 64)
	return n, js, err == nil
}
