package presence

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Instances = (*RedisInstances)(nil)

// RedisInstances is the registry shared by every instance: a hash per instance that
// expires unless the instance beats, and a set of their ids so nobody has to SCAN.
type RedisInstances struct {
	rdb  redis.UniversalClient
	keys redisKeys
	ttl  time.Duration
}

// NewRedisInstances returns the registry under opts.Prefix; an instance lives
// opts.PresenceTTL after its last beat.
func NewRedisInstances(rdb redis.UniversalClient, opts RedisOptions) *RedisInstances {
	opts = opts.withDefaults()
	return &RedisInstances{rdb: rdb, keys: redisKeys(opts.Prefix), ttl: opts.PresenceTTL}
}

// beatScript refreshes one instance and drops from the set the ids whose hash has
// expired, in one step so the set never names a live instance without its hash.
// KEYS: instances set, instance hash. ARGV: id, started, conns, beat time, ttl ms,
// instance key prefix.
var beatScript = redis.NewScript(`
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'started', ARGV[2], 'conns', ARGV[3], 'beat', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('SREM', KEYS[1], id) end
end
return 1
`)

// listScript returns id, started, conns of every instance whose hash still exists.
// KEYS: instances set. ARGV: instance key prefix.
var listScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. id, 'started', 'conns')
  if v[1] then
    out[#out + 1] = id
    out[#out + 1] = v[1]
    out[#out + 1] = v[2] or '0'
  end
end
return out
`)

func (r *RedisInstances) Beat(ctx context.Context, inst Instance) error {
	if inst.ID == "" {
		return fmt.Errorf("instance beat: empty instance id")
	}
	err := beatScript.Run(ctx, r.rdb,
		[]string{r.keys.instances(), r.keys.instance(inst.ID)},
		inst.ID, inst.Started.UTC().Format(time.RFC3339Nano), inst.Conns,
		time.Now().UTC().Format(time.RFC3339Nano), r.ttl.Milliseconds(), r.keys.instance(""),
	).Err()
	if err != nil {
		return fmt.Errorf("instance beat: %w", err)
	}
	return nil
}

func (r *RedisInstances) Leave(ctx context.Context, id string) error {
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, r.keys.instances(), id)
		p.Del(ctx, r.keys.instance(id), r.keys.conns(id))
		return nil
	})
	if err != nil {
		return fmt.Errorf("instance leave: %w", err)
	}
	return nil
}

func (r *RedisInstances) List(ctx context.Context) ([]Instance, error) {
	vals, err := listScript.Run(ctx, r.rdb, []string{r.keys.instances()}, r.keys.instance("")).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("instance list: %w", err)
	}
	out := make([]Instance, 0, len(vals)/3)
	for i := 0; i+2 < len(vals); i += 3 {
		started, err := time.Parse(time.RFC3339Nano, vals[i+1])
		if err != nil {
			return nil, fmt.Errorf("instance list: %s: bad start time %q: %w", vals[i], vals[i+1], err)
		}
		conns, err := strconv.Atoi(vals[i+2])
		if err != nil {
			return nil, fmt.Errorf("instance list: %s: bad connection count %q: %w", vals[i], vals[i+2], err)
		}
		out = append(out, Instance{ID: vals[i], Started: started, Conns: conns})
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
