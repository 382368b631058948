package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shape and timing of a test's Redis Cluster.
const (
	// clusterMasters is the smallest cluster redis-cli --cluster create accepts.
	clusterMasters = 3
	// clusterBusOffset is fixed by Redis: each node also listens on port+10000 for
	// the cluster bus.
	clusterBusOffset = 10000
	// clusterPortAttempts bounds the retries with other ports when a bind fails
	// (tests of several packages start clusters at the same time).
	clusterPortAttempts = 20
	// clusterNodeTimeout is how long a silent node is given before the others call it
	// failed: short, so a test that kills a master sees the cluster react within
	// seconds, yet well above a scheduling hiccup on shared CPUs.
	clusterNodeTimeout = 5 * time.Second
	// clusterOKTimeout bounds the wait for every node to report cluster_state:ok.
	clusterOKTimeout = 30 * time.Second
)

// RedisCluster is a private Redis Cluster of three masters (and, from
// NewRedisClusterWithReplicas, one replica each) on loopback, without persistence,
// started for one test and killed when it ends.
type RedisCluster struct {
	Addrs []string // node addresses, 127.0.0.1:port: the masters first, then the replicas
	// URL is the REDIS_URL form for a cluster: redis+cluster://host:port,host:port,…
	URL   string
	nodes []*Proc
}

// NewRedisCluster starts three cluster-enabled redis-servers on ports below the
// ephemeral range (their bus ports too), joins them with redis-cli --cluster create,
// and waits until every node says cluster_state:ok. It fails the test with a clear
// message when redis-server or redis-cli is missing.
func NewRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	return newRedisCluster(t, 0)
}

// NewRedisClusterWithReplicas is NewRedisCluster with one replica per master (six
// nodes), for failover tests: a master killed or paused for longer than the node
// timeout (5 s) is replaced by its replica.
func NewRedisClusterWithReplicas(t testing.TB) *RedisCluster {
	t.Helper()
	return newRedisCluster(t, 1)
}

func newRedisCluster(t testing.TB, replicas int) *RedisCluster {
	t.Helper()
	var errs []error
	for range clusterPortAttempts {
		c, err := tryCluster(t, replicas)
		if err == nil {
			return c
		}
		if !errors.Is(err, ErrBind) {
			t.Fatalf("redis cluster: %v", err)
		}
		errs = append(errs, err)
	}
	t.Fatalf("redis cluster: no free ports after %d attempts; the last: %v", clusterPortAttempts, errs[len(errs)-1])
	return nil
}

// tryCluster starts the nodes on one random set of ports; it returns ErrBind
// (having killed what it started) when one of them could not bind.
func tryCluster(t testing.TB, replicas int) (*RedisCluster, error) {
	t.Helper()
	n := clusterMasters * (1 + replicas)
	lo, hi := freePortSpan()
	base := lo + rand.IntN(hi-lo-n)
	c := &RedisCluster{}
	for i := range n {
		port := base + i
		dir := t.TempDir()
		p, err := StartProc(t, dir,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
			"--save", "", "--appendonly", "no")
		if err != nil {
			for _, n := range c.nodes {
				n.Kill()
			}
			return nil, err
		}
		c.nodes = append(c.nodes, p)
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	c.URL = "redis+cluster://" + strings.Join(c.Addrs, ",")
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitOK(clusterOKTimeout); err != nil {
		return nil, err
	}
	if replicas > 0 {
		if err := c.waitReplicas(clusterOKTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// waitReplicas polls until every master has a replica in sync (master_link_status up).
func (c *RedisCluster) waitReplicas(timeout time.Duration) error {
	var replicas []int
	for i := clusterMasters; i < len(c.Addrs); i++ {
		replicas = append(replicas, i)
	}
	return c.pollNodes(replicas, timeout, 50*time.Millisecond, func(ctx context.Context, rdb *redis.Client) (string, bool) {
		info, err := rdb.Info(ctx, "replication").Result()
		return fmt.Sprintf("not in sync: %v\n%s", err, info), err == nil && strings.Contains(info, "master_link_status:up")
	})
}

// pollNodes polls each of the nodes in turn with check, backing off up to most, until
// check says ok, or fails with check's last word once timeout has passed in all.
func (c *RedisCluster) pollNodes(nodes []int, timeout, most time.Duration, check func(context.Context, *redis.Client) (why string, ok bool)) error {
	deadline := time.Now().Add(timeout)
	for _, i := range nodes {
		if err := pollNode(c.node(i), deadline, most, check); err != nil {
			return fmt.Errorf("node %s within %s: %w", c.Addrs[i], timeout, err)
		}
	}
	return nil
}

func pollNode(rdb *redis.Client, deadline time.Time, most time.Duration, check func(context.Context, *redis.Client) (string, bool)) error {
	defer rdb.Close()
	for wait := time.Millisecond; ; wait = min(2*wait, most) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		why, ok := check(ctx, rdb)
		cancel()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(why)
		}
		time.Sleep(wait) // polling with a deadline
	}
}

// Masters are the indexes of the nodes serving slots now, as node from (a live node)
// sees them.
func (c *RedisCluster) Masters(t testing.TB, from int) []int {
	t.Helper()
	rdb := c.node(from)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	defer cancel()
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("cluster slots from %s: %v", c.Addrs[from], err)
	}
	var out []int
	for _, s := range slots {
		for i, a := range c.Addrs {
			if len(s.Nodes) > 0 && s.Nodes[0].Addr == a && !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}

// WaitFailover waits until master i's slots are served by another node, as every
// other node that answers sees it, and each of those says cluster_state:ok: a
// replica took over.
func (c *RedisCluster) WaitFailover(t testing.TB, i int, timeout time.Duration) {
	t.Helper()
	var others []int
	for j := range c.Addrs {
		if j != i {
			others = append(others, j)
		}
	}
	err := c.pollNodes(others, timeout, 100*time.Millisecond, func(ctx context.Context, rdb *redis.Client) (string, bool) {
		info, err := rdb.ClusterInfo(ctx).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = rdb.ClusterSlots(ctx).Result()
		}
		return fmt.Sprintf("master %s not failed over: %v\n%s", c.Addrs[i], err, info),
			err == nil && strings.Contains(info, "cluster_state:ok") && !servedBy(slots, c.Addrs[i])
	})
	if err != nil {
		t.Fatal(err)
	}
}

// servedBy says whether addr is the master of any slot range.
func servedBy(slots []redis.ClusterSlot, addr string) bool {
	for _, s := range slots {
		if len(s.Nodes) > 0 && s.Nodes[0].Addr == addr {
			return true
		}
	}
	return false
}

// Rejoin starts node i again after Kill, on its port with its cluster config file
// (it comes back as a replica of the node that took over), and waits until the
// cluster is ok.
func (c *RedisCluster) Rejoin(t testing.TB, i int) { c.Restart(t, i) }

// waitOK polls every node until each says cluster_state:ok and knows all the others.
func (c *RedisCluster) waitOK(timeout time.Duration) error {
	all := make([]int, len(c.Addrs))
	for i := range all {
		all[i] = i
	}
	return c.pollNodes(all, timeout, 50*time.Millisecond, func(ctx context.Context, rdb *redis.Client) (string, bool) {
		info, err := rdb.ClusterInfo(ctx).Result()
		return fmt.Sprintf("not ok: %v\n%s", err, info), err == nil && strings.Contains(info, "cluster_state:ok") &&
			strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Addrs)))
	})
}

// Client is a go-redis cluster client on the seeds, closed when the test ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Env is the environment of servers on this cluster: REDIS_URL and a key prefix of
// the test's own (the cluster is the test's own anyway; the prefix keeps the keys
// looking as they would in production).
func (c *RedisCluster) Env() map[string]string {
	return map[string]string{"REDIS_URL": c.URL, "BRIDGE_REDIS_PREFIX": NewPrefix()}
}

// Pause stops master i with SIGSTOP: it keeps its sockets and answers nothing.
func (c *RedisCluster) Pause(t testing.TB, i int) {
	t.Helper()
	if err := c.nodes[i].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues master i after Pause.
func (c *RedisCluster) Resume(t testing.TB, i int) {
	t.Helper()
	if err := c.nodes[i].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Kill ends node i with SIGKILL; without a replica its slots are unserved until
// Restart.
func (c *RedisCluster) Kill(i int) { c.nodes[i].Kill() }

// Restart starts master i again on its port, empty (no persistence) but with its
// cluster config file, so it takes back its node id and slots, and waits until the
// cluster is ok again.
func (c *RedisCluster) Restart(t testing.TB, i int) {
	t.Helper()
	if err := c.nodes[i].Restart(); err != nil {
		t.Fatalf("restart redis cluster node %s: %v", c.Addrs[i], err)
	}
	if err := c.waitOK(clusterOKTimeout); err != nil {
		t.Fatalf("redis cluster after restarting %s: %v", c.Addrs[i], err)
	}
}

// NodeOf returns the index of the master that serves key's slot.
func (c *RedisCluster) NodeOf(t testing.TB, key string) int {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.Addrs[0]})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("cluster keyslot %s: %v", key, err)
	}
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("cluster slots: %v", err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			for i, a := range c.Addrs {
				if a == s.Nodes[0].Addr {
					return i
				}
			}
		}
	}
	t.Fatalf("no master of this cluster serves slot %d of %s", slot, key)
	return -1
}

// clusterOpTimeout bounds one command sent to a single node (CONFIG, DBSIZE).
const clusterOpTimeout = 5 * time.Second

// node is a plain client on master i, for what is sent to one node (CONFIG, DBSIZE).
func (c *RedisCluster) node(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: c.Addrs[i], MaxRetries: -1})
}

// configAll runs CONFIG SET key value on every master.
func (c *RedisCluster) configAll(t testing.TB, key, value string) {
	t.Helper()
	for i := range c.Addrs {
		rdb := c.node(i)
		ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
		err := rdb.ConfigSet(ctx, key, value).Err()
		cancel()
		rdb.Close()
		if err != nil {
			t.Fatalf("redis cluster node %s: CONFIG SET %s %s: %v", c.Addrs[i], key, value, err)
		}
	}
}

// RefuseWrites makes every master answer writes with OOM, as a full Redis with
// maxmemory-policy noeviction does.
func (c *RedisCluster) RefuseWrites(t testing.TB) {
	t.Helper()
	c.configAll(t, "maxmemory-policy", "noeviction")
	c.configAll(t, "maxmemory", "1")
}

// AllowWrites lifts RefuseWrites.
func (c *RedisCluster) AllowWrites(t testing.TB) {
	t.Helper()
	c.configAll(t, "maxmemory", "0")
}

// DBSize is the number of keys master i holds.
func (c *RedisCluster) DBSize(t testing.TB, i int) int64 {
	t.Helper()
	rdb := c.node(i)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	defer cancel()
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatalf("redis cluster node %s: DBSIZE: %v", c.Addrs[i], err)
	}
	return n
}
