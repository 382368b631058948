package apptest_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// TestPrivateRedisFaults: each fault of the private Redis does what a fault test
// relies on — a paused server answers nothing until resumed, a full one refuses
// writes but not reads, a restarted one is empty on the same address.
func TestPrivateRedisFaults(t *testing.T) {
	r := apptest.NewPrivateRedis(t)
	key := r.Prefix + "k"
	ctx := context.Background()
	if err := r.Client.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	r.Pause(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := r.Client.Get(short, key).Err()
	cancel()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("GET on a paused redis: %v, want a timeout", err)
	}
	r.Resume(t)
	if got, err := r.Client.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("GET after resume: %q, %v", got, err)
	}

	r.RefuseWrites(t)
	if err := r.Client.Set(ctx, key, "w", 0).Err(); err == nil {
		t.Errorf("SET on a redis refusing writes succeeded")
	}
	if got, err := r.Client.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Errorf("GET on a redis refusing writes: %q, %v; want v", got, err)
	}
	r.AllowWrites(t)
	if err := r.Client.Set(ctx, key, "w", 0).Err(); err != nil {
		t.Fatalf("SET after AllowWrites: %v", err)
	}

	r.Restart(t)
	if err := r.Client.Get(ctx, key).Err(); err != redis.Nil {
		t.Errorf("GET after a restart: %v, want nil (empty)", err)
	}
	if err := r.Client.Set(ctx, key, "x", 0).Err(); err != nil {
		t.Fatalf("SET after restart: %v", err)
	}
	if n := r.Del(t, key); n != 1 {
		t.Errorf("DEL deleted %d keys, want 1", n)
	}
}
