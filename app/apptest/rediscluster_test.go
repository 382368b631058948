package apptest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestRedisCluster: the helper's cluster has three masters that share the slots, and a
// go-redis ClusterClient on its seeds writes and reads keys served by each of them.
func TestRedisCluster(t *testing.T) {
	c := apptest.NewRedisCluster(t)
	if len(c.Addrs) != 3 {
		t.Fatalf("%d seed addresses, want 3", len(c.Addrs))
	}
	if want := "redis+cluster://" + strings.Join(c.Addrs, ","); c.URL != want {
		t.Errorf("URL %q, want %q", c.URL, want)
	}
	rdb := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	served := map[int]bool{}
	keys := 0
	for i := 0; len(served) < 3; i++ {
		if i == 1000 {
			t.Fatalf("1000 keys touched only masters %v", served)
		}
		key := fmt.Sprintf("k%d", i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		got, err := rdb.Get(ctx, key).Int()
		if err != nil || got != i {
			t.Fatalf("GET %s: %d, %v; want %d", key, got, err, i)
		}
		served[c.NodeOf(t, key)] = true
		keys++
	}
	// The keys are spread: each master holds some, and together exactly those written.
	var mu sync.Mutex // ForEachMaster calls in parallel
	total := int64(0)
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("master %s holds no key", m.Options().Addr)
		}
		mu.Lock()
		total += n
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != int64(keys) {
		t.Errorf("the masters hold %d keys in all, want the %d written", total, keys)
	}
}

// TestRedisClusterRestartMaster: a master killed and started again comes back on its
// address with its slots and without its data (no persistence), and the cluster
// serves its keys again.
func TestRedisClusterRestartMaster(t *testing.T) {
	c := apptest.NewRedisCluster(t)
	rdb := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := "k"
	if err := rdb.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	i := c.NodeOf(t, key)
	c.Kill(i)
	c.Restart(t, i)
	if got := c.NodeOf(t, key); got != i {
		t.Fatalf("after the restart master %d serves %q, want %d", got, key, i)
	}
	if err := rdb.Get(ctx, key).Err(); err != redis.Nil {
		t.Fatalf("GET %s after a restart without persistence: %v, want nil", key, err)
	}
	if err := rdb.Set(ctx, key, "after", 0).Err(); err != nil {
		t.Fatalf("SET %s after the restart: %v", key, err)
	}
}
