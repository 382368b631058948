package presence

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisRelayResubscribe: when Redis drops the subscriber (as it does to a slow
// one) the relay subscribes again and says so, so the caller can repair from history,
// and messages flow again.
func TestRedisRelayResubscribe(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	// The receiver's own client, named so this test can find and kill its connection
	// without touching anyone else's.
	name := strings.NewReplacer(":", "_").Replace(opts.Prefix) + "B"
	rcv := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, DB: rdb.Options().DB, ClientName: name})
	t.Cleanup(func() { rcv.Close() })
	oa, ob := opts, opts
	oa.Instance, ob.Instance = "A", "B"
	a, b := redisSender{rdb, redisKeys(oa.Prefix), "A"}, NewRedisRelay(rcv, ob, nil)
	pb := startRelay(t, b)

	if err := a.Send(ctx, "B", &Message{ID: "1", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "1" {
		t.Fatalf("got %s, want 1", got.ID)
	}

	killed := killClients(t, rdb, name)
	if killed == 0 {
		t.Fatalf("found no connection named %s to kill", name)
	}
	pb.waitSubscribed(t)
	if got := b.Subscribes.Load(); got != 2 {
		t.Errorf("subscribes: got %d, want 2", got)
	}
	if err := a.Send(ctx, "B", &Message{ID: "2", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "2" {
		t.Fatalf("after resubscribing: got %s, want 2", got.ID)
	}
}

// TestRedisRelayGarbage: a payload that is not a relayed message (a person testing
// with redis-cli PUBLISH) is counted and dropped; the relay goes on.
func TestRedisRelayGarbage(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.Instance = "B"
	b := NewRedisRelay(rdb, opts, nil)
	pb := startRelay(t, b)
	keys := redisKeys(opts.Prefix)
	for _, junk := range []string{"hello", "", "\x01\xff"} {
		if err := rdb.Publish(ctx, keys.relayInstance("B"), junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := (redisSender{rdb, keys, "A"}).Send(ctx, "B", &Message{ID: "9"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "9" {
		t.Fatalf("got %s, want 9", got.ID)
	}
	if got := b.Undecodable.Load(); got != 3 {
		t.Errorf("undecodable: got %d, want 3", got)
	}
}

// killClients closes the server side of every connection named name.
func killClients(t *testing.T, rdb *redis.Client, name string) int {
	t.Helper()
	ctx := context.Background()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		var id string
		var match bool
		for _, f := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				match = true
			}
		}
		if match && id != "" {
			if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatalf("client kill %s: %v", id, err)
			}
			n++
		}
	}
	return n
}

// TestRedisRelaySilentRedis: when Redis stops answering without closing the socket (a
// network that drops packets), the relay notices by its unanswered ping and subscribes
// again on a fresh connection.
func TestRedisRelaySilentRedis(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	px := newBlackHoleProxy(t, rdb.Options().Addr)
	rcv := redis.NewClient(&redis.Options{Addr: px.addr(), DB: rdb.Options().DB})
	t.Cleanup(func() { rcv.Close() })
	opts.Instance = "B"
	b := NewRedisRelay(rcv, opts, nil)
	b.ping = 100 * time.Millisecond
	pb := startRelay(t, b)

	px.swallowCurrent()
	pb.waitSubscribed(t)
	a := redisSender{rdb, redisKeys(opts.Prefix), "A"}
	if err := a.Send(ctx, "B", &Message{ID: "5"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.ID != "5" {
		t.Fatalf("after the silent connection was replaced: got %s, want 5", got.ID)
	}
}

// blackHoleProxy forwards TCP to target until told to swallow: from then on the
// connections open at that moment pass nothing in either direction but stay open.
type blackHoleProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	gen    int // connections of an older generation are swallowed
	closed []net.Conn
}

func newBlackHoleProxy(t *testing.T, target string) *blackHoleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackHoleProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.closed {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			gen := p.gen
			p.closed = append(p.closed, c, up)
			p.mu.Unlock()
			wg.Go(func() { p.pipe(up, c, gen) })
			wg.Go(func() { p.pipe(c, up, gen) })
		}
	})
	return p
}

func (p *blackHoleProxy) addr() string { return p.ln.Addr().String() }

// swallowCurrent makes the connections open now go silent.
func (p *blackHoleProxy) swallowCurrent() {
	p.mu.Lock()
	p.gen++
	p.mu.Unlock()
}

// pipe copies src to dst while gen is current, then reads and drops.
func (p *blackHoleProxy) pipe(dst io.Writer, src io.Reader, gen int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		live := p.gen == gen
		p.mu.Unlock()
		if live {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}
