package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Store = (*Redis)(nil)

// Redis keeps results in Redis, one string key per Idempotency-Key
// (<prefix>idem:<key>) that expires with the window, so any instance answers a
// retry the same. A claim is the same key holding "claim:<token>" for ClaimTTL.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	window time.Duration
}

// NewRedis keeps results under prefix for window.
func NewRedis(rdb redis.UniversalClient, prefix string, window time.Duration) *Redis {
	return &Redis{rdb: rdb, prefix: prefix, window: window}
}

const claimPrefix = "claim:"

// claimScript: KEYS[1] the key; ARGV: the claim value, ClaimTTL in ms. Returns what
// the key holds, or nil once it holds the claim.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// releaseScript deletes KEYS[1] if it still holds the claim ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (r *Redis) key(k string) string { return r.prefix + "idem:" + k }

func (r *Redis) Claim(ctx context.Context, key string) (*Result, *Claim, error) {
	c := &Claim{Key: key, token: newToken()}
	v, err := claimScript.Run(ctx, r.rdb, []string{r.key(key)}, claimPrefix+c.token, ClaimTTL.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, c, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if strings.HasPrefix(v, claimPrefix) {
		return nil, nil, nil
	}
	var res Result
	if err := json.Unmarshal([]byte(v), &res); err != nil {
		return nil, nil, fmt.Errorf("remembered result of %q: %w", key, err)
	}
	return &res, nil, nil
}

func (r *Redis) Save(ctx context.Context, c *Claim, res Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return r.rdb.Set(ctx, r.key(c.Key), b, r.window).Err()
}

func (r *Redis) Release(ctx context.Context, c *Claim) error {
	return releaseScript.Run(ctx, r.rdb, []string{r.key(c.Key)}, claimPrefix+c.token).Err()
}
