package presence

import (
	"net"
	"strings"
	"testing"
)

func TestNewRedisClient(t *testing.T) {
	ctx := testCtx(t)
	rdb, err := NewRedisClient(ctx, testRedisURL())
	if err != nil {
		t.Fatalf("Redis is not reachable: %v (start it with: redis-server --daemonize yes --save '' --appendonly no)", err)
	}
	rdb.Close()

	// A port nobody listens on: a closed listener's address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "redis://" + ln.Addr().String() + "/0"
	ln.Close()
	for _, bad := range []string{"http://localhost:6379", "redis://127.0.0.1:6379/notadb", dead} {
		rdb, err := NewRedisClient(ctx, bad)
		if err == nil {
			rdb.Close()
			t.Errorf("NewRedisClient(%q): got no error", bad)
			continue
		}
		if !strings.HasPrefix(err.Error(), "REDIS_URL: ") {
			t.Errorf("NewRedisClient(%q): error %q does not name REDIS_URL", bad, err)
		}
	}
}
