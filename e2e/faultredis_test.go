package e2e_test

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// faultsRedis chooses the Redis the fault tests break: "single" (a private
// redis-server) or "cluster" (a private 3-master Redis Cluster; needs REDIS_URL's
// redis+cluster:// form). go test ./e2e/ -run TestFault -args -faults.redis=cluster
var faultsRedis = flag.String("faults.redis", "single", "fault tests: the private Redis to break, single or cluster")

// faultRedisOpTimeout bounds one command a test sends its own Redis (SCAN, DEL, HDEL).
const faultRedisOpTimeout = 10 * time.Second

// faultRedis is a Redis of the test's own that a fault test may pause, fill or
// restart. On a cluster a pause or a full memory hits every master (the whole Redis
// falters), a restart hits one master (the one holding the most keys of the test).
type faultRedis interface {
	env() map[string]string
	prefix() string
	pause(t *testing.T)
	resume(t *testing.T)
	refuseWrites(t *testing.T)
	allowWrites(t *testing.T)
	restartEmpty(t *testing.T)
	// each runs f on every master (one server: on it).
	each(t *testing.T, f func(ctx context.Context, c *redis.Client) error)
	// cmd is a client for commands on keys (a cluster client on a cluster).
	cmd() redis.Cmdable
}

// newFaultRedis starts the Redis kind names (single or cluster; "": -faults.redis).
func newFaultRedis(t *testing.T, kind string) faultRedis {
	t.Helper()
	if kind == "" {
		kind = *faultsRedis
	}
	switch kind {
	case "single":
		return singleRedis{apptest.NewPrivateRedis(t)}
	case "cluster":
		c := apptest.NewRedisCluster(t)
		return &clusterRedis{c: c, env_: c.Env(), rdb: c.Client(t)}
	case "cluster-replicas": // for the failover tests
		c := apptest.NewRedisClusterWithReplicas(t)
		return &clusterRedis{c: c, env_: c.Env(), rdb: c.Client(t)}
	}
	t.Fatalf("fault redis %q: want single or cluster", kind)
	return nil
}

type singleRedis struct{ *apptest.PrivateRedis }

func (r singleRedis) env() map[string]string    { return r.Env() }
func (r singleRedis) prefix() string            { return r.Prefix }
func (r singleRedis) pause(t *testing.T)        { r.Pause(t) }
func (r singleRedis) resume(t *testing.T)       { r.Resume(t) }
func (r singleRedis) refuseWrites(t *testing.T) { r.RefuseWrites(t) }
func (r singleRedis) allowWrites(t *testing.T)  { r.AllowWrites(t) }
func (r singleRedis) restartEmpty(t *testing.T) { r.Restart(t) }
func (r singleRedis) cmd() redis.Cmdable        { return r.Client }
func (r singleRedis) each(t *testing.T, f func(context.Context, *redis.Client) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRedisOpTimeout)
	defer cancel()
	if err := f(ctx, r.Client); err != nil {
		t.Fatalf("private redis: %v", err)
	}
}

type clusterRedis struct {
	c    *apptest.RedisCluster
	env_ map[string]string
	rdb  *redis.ClusterClient
}

func (r *clusterRedis) env() map[string]string { return r.env_ }
func (r *clusterRedis) prefix() string         { return r.env_["BRIDGE_REDIS_PREFIX"] }
func (r *clusterRedis) cmd() redis.Cmdable     { return r.rdb }
func (r *clusterRedis) pause(t *testing.T) {
	for i := range r.c.Addrs {
		r.c.Pause(t, i)
	}
}
func (r *clusterRedis) resume(t *testing.T) {
	for i := range r.c.Addrs {
		r.c.Resume(t, i)
	}
}
func (r *clusterRedis) refuseWrites(t *testing.T) { r.c.RefuseWrites(t) }
func (r *clusterRedis) allowWrites(t *testing.T)  { r.c.AllowWrites(t) }

// restartEmpty restarts the master holding the most of the test's keys.
func (r *clusterRedis) restartEmpty(t *testing.T) {
	t.Helper()
	best, most := 0, int64(-1)
	for i := range r.c.Addrs {
		if n := r.c.DBSize(t, i); n > most {
			best, most = i, n
		}
	}
	r.c.Kill(best)
	r.c.Restart(t, best)
}
func (r *clusterRedis) each(t *testing.T, f func(context.Context, *redis.Client) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRedisOpTimeout)
	defer cancel()
	if err := r.rdb.ForEachMaster(ctx, f); err != nil {
		t.Fatalf("redis cluster: %v", err)
	}
}

// scanKeys lists the keys matching pattern on every master.
func scanKeys(t *testing.T, r faultRedis, pattern string) []string {
	t.Helper()
	var keys []string
	ch := make(chan []string, 8)
	r.each(t, func(ctx context.Context, c *redis.Client) error {
		var ks []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			ks = append(ks, iter.Val())
		}
		ch <- ks
		return iter.Err()
	})
	close(ch)
	for ks := range ch {
		keys = append(keys, ks...)
	}
	return keys
}

// The keys a scenario deletes. Both layouts are known: the first design (one global
// counter, a presence hash per instance) and the second of docs/redis.md (an epoch
// and presence fields in each stream's meta hash); whichever the code under test
// wrote is what exists.

// deleteEpochs deletes what numbers the history: the first design's global counter,
// or every stream's meta hash (its epoch and top) in the second. It returns the keys
// deleted, failing the test if there were none (the layout changed again).
func deleteEpochs(t *testing.T, r faultRedis) []string {
	t.Helper()
	p := r.prefix()
	keys := append(scanKeys(t, r, p+"history:seq"), scanKeys(t, r, p+"{*}:meta")...)
	return deleteKeys(t, r, keys, "the history's counter or epochs")
}

// deleteInstancePresence deletes what says which users instance id holds: the first
// design's conns:<id> hash, or the i:<id> field of every user's meta hash in the
// second (and, there, nothing else: the epochs stay).
func deleteInstancePresence(t *testing.T, r faultRedis, id string) []string {
	t.Helper()
	p := r.prefix()
	if keys := scanKeys(t, r, p+"conns:"+id); len(keys) > 0 {
		return deleteKeys(t, r, keys, "the instance's presence")
	}
	var touched []string
	ctx, cancel := context.WithTimeout(context.Background(), faultRedisOpTimeout)
	defer cancel()
	for _, k := range scanKeys(t, r, p+"{u:*}:meta") {
		n, err := r.cmd().HDel(ctx, k, "i:"+id).Result()
		if err != nil {
			t.Fatalf("HDEL %s i:%s: %v", k, id, err)
		}
		if n > 0 {
			touched = append(touched, k+" i:"+id)
		}
	}
	if len(touched) == 0 {
		t.Fatalf("no presence of instance %s found under %s (neither conns:<id> nor {u:*}:meta i:<id>): the key layout changed", id, p)
	}
	return touched
}

func deleteKeys(t *testing.T, r faultRedis, keys []string, what string) []string {
	t.Helper()
	if len(keys) == 0 {
		t.Fatalf("no key holds %s under %s: the key layout changed", what, r.prefix())
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultRedisOpTimeout)
	defer cancel()
	for _, k := range keys { // one by one: on a cluster they are in different slots
		if err := r.cmd().Del(ctx, k).Err(); err != nil {
			t.Fatalf("DEL %s: %v", k, err)
		}
	}
	return keys
}

// shortKeys is keys without the prefix, for a log line.
func shortKeys(r faultRedis, keys []string) string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, r.prefix())
	}
	if len(out) > 6 {
		out = append(out[:6], "…")
	}
	return strings.Join(out, " ")
}

// busiestMaster is the master (of those live now, as node from sees them) holding
// the most keys: the one whose failover touches most of the test.
func (r *clusterRedis) busiestMaster(t *testing.T, from int) int {
	t.Helper()
	best, most := -1, int64(-1)
	for _, i := range r.c.Masters(t, from) {
		if n := r.c.DBSize(t, i); n > most {
			best, most = i, n
		}
	}
	return best
}
