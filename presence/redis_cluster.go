package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster URL schemes: a Redis Cluster named by one or more seed nodes,
// redis+cluster://[user:password@]host:port[,host:port…], rediss+cluster:// for TLS.
const (
	clusterScheme    = "redis+cluster"
	clusterTLSScheme = "rediss+cluster"
)

// IsClusterURL says whether url names a Redis Cluster (its scheme).
func IsClusterURL(u string) bool {
	s, _, _ := strings.Cut(u, "://")
	return s == clusterScheme || s == clusterTLSScheme
}

// CheckClusterURL says what is wrong with a cluster URL, without connecting.
func CheckClusterURL(u string) error {
	_, err := parseClusterURL(u)
	return err
}

// parseClusterURL reads a cluster URL into go-redis options. A path may only name
// database 0 (a cluster has no other); the query takes go-redis's cluster options
// (dial_timeout, …) as redis.ParseClusterURL reads them.
func parseClusterURL(raw string) (*redis.ClusterOptions, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	rest, query, _ := strings.Cut(rest, "?")
	rest, path, _ := strings.Cut(rest, "/")
	if path != "" && path != "0" {
		return nil, fmt.Errorf("a Redis Cluster has only database 0, not %q", path)
	}
	user := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i+1], rest[i+1:]
	}
	var addrs []string
	for a := range strings.SplitSeq(rest, ",") {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("seed node %q: want host:port", a)
		}
		addrs = append(addrs, a)
	}
	// go-redis's own form: the first seed in the authority, the others as addr=.
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	s := "redis"
	if scheme == clusterTLSScheme {
		s = "rediss"
	}
	opt, err := redis.ParseClusterURL(s + "://" + user + addrs[0] + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	return opt, nil
}

// newClusterClient connects to the cluster named by raw with the same limits as
// NewRedisClient's single server.
func newClusterClient(ctx context.Context, raw string) (redis.UniversalClient, error) {
	opt, err := parseClusterURL(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	clientLimits(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries)
	opt.ClusterStateReloadInterval = cmp.Or(opt.ClusterStateReloadInterval, clusterStateReload)
	rdb := redis.NewClusterClient(opt)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	// Every master must answer: a message's slot may be on any of them.
	err = rdb.ForEachMaster(pctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	if err == nil {
		err = rdb.Ping(pctx).Err()
	}
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("REDIS_URL: redis cluster at %s does not answer: %w", strings.Join(opt.Addrs, ","), err)
	}
	return rdb, nil
}

// clusterStateReload is how old the client's map of slots to masters may get before
// it is read again (CLUSTER SLOTS, lazily, when a command needs it; go-redis's default
// is a minute): after a failover, the commands for the old master's slots fail until
// then, unless a failed dispatch asked for a reload sooner (RedisDispatcher).
const clusterStateReload = 5 * time.Second

// reloadSlotsAfter asks rdb, when it is a cluster client, to read the slot map again
// soon (once, in the background) if err says a node did not answer (a broken
// connection, a timeout): its master may have been replaced by a replica.
func reloadSlotsAfter(ctx context.Context, rdb redis.UniversalClient, err error) {
	var re redis.Error
	if cc, ok := rdb.(*redis.ClusterClient); ok && err != nil && !errors.As(err, &re) {
		cc.ReloadState(ctx)
	}
}

// isCluster says whether rdb talks to a Redis Cluster: pub/sub is then sharded
// (SPUBLISH/SSUBSCRIBE), so a message goes only to the shard of its channel.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}
