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
	rcv := redis.NewClient(&redis.Options{Addr: rdb.(*redis.Client).Options().Addr, DB: rdb.(*redis.Client).Options().DB, ClientName: name})
	t.Cleanup(func() { rcv.Close() })
	oa, ob := opts, opts
	oa.Instance, ob.Instance = "A", "B"
	a, b := NewRedisRelay(rdb, oa, nil), NewRedisRelay(rcv, ob, nil)
	pb := startRelay(t, b)

	if err := a.Send(ctx, "B", &Message{Seq: 1, Epoch: "0000000000", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.Seq != 1 {
		t.Fatalf("got %d, want 1", got.Seq)
	}

	killed := killClients(t, rdb, name)
	if killed == 0 {
		t.Fatalf("found no connection named %s to kill", name)
	}
	pb.waitSubscribed(t)
	if got := b.Subscribes.Load(); got != 2 {
		t.Errorf("subscribes: got %d, want 2", got)
	}
	if err := a.Send(ctx, "B", &Message{Seq: 2, Epoch: "0000000000", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.Seq != 2 {
		t.Fatalf("after resubscribing: got %d, want 2", got.Seq)
	}
}

// TestRedisRelayGarbage: a payload that is not a relayed message (a person testing
// with redis-cli PUBLISH), or a forged one naming another deployment, is counted by
// reason and dropped, never delivered; the relay goes on.
func TestRedisRelayGarbage(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.Instance = "B"
	b := NewRedisRelay(rdb, opts, nil)
	pb := startRelay(t, b)
	ns := relayNamespace(rdb, opts.Prefix)
	forged := encodeRelay("bridge:db8:", "A", &Message{Seq: 1, Epoch: "0000000000", UserID: "u", Body: []byte("forged")})
	for _, junk := range []string{"hello", "", "\x01\xff", string(forged), string(append(encodeRelay(ns, "A", &Message{Seq: 2, Epoch: "0000000000"}), 'x'))} {
		if err := rdb.Publish(ctx, relayInstance(ns, "B"), junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewRedisRelay(rdb, RedisOptions{Prefix: opts.Prefix, Instance: "A"}, nil).Send(ctx, "B", &Message{Seq: 9, Epoch: "0000000000"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.Seq != 9 {
		t.Fatalf("got %d, want 9 (nothing of the dropped payloads)", got.Seq)
	}
	if m, f := b.Malformed.Load(), b.Foreign.Load(); m != 4 || f != 1 {
		t.Errorf("dropped: malformed %d, foreign %d; want 4 and 1", m, f)
	}
}

// TestRedisRelayDatabasesApart: two deployments with the same prefix on two databases
// of one Redis server (pub/sub ignores databases) never hear each other: their
// channels differ, and so do the namespaces their payloads carry.
func TestRedisRelayDatabasesApart(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	other := redis.NewClient(&redis.Options{Addr: rdb.(*redis.Client).Options().Addr, DB: rdb.(*redis.Client).Options().DB + 1, MaxRetries: -1})
	t.Cleanup(func() { other.Close() })
	deployments := map[string]redis.UniversalClient{"x": rdb, "y": other}
	probes := map[string]*relayProbe{}
	relays := map[string]*RedisRelay{}
	for name, c := range deployments {
		o := opts
		o.Instance = "B"
		relays[name] = NewRedisRelay(c, o, nil)
		probes[name] = startRelay(t, relays[name])
	}
	for name, c := range deployments {
		d := NewRedisDispatcher(c, opts)
		m := &Message{RoutingKey: "news", Body: []byte("broadcast of " + name)}
		if _, err := d.Dispatch(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.Del(ctx, d.keys.meta(""), d.keys.stream("")).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range probes {
		if got := p.next(t); string(got.Body) != "broadcast of "+name {
			t.Fatalf("deployment %s got %q, want its own broadcast", name, got.Body)
		}
	}
	// The next message each one hears is its own again: nothing crossed.
	for name, c := range deployments {
		if _, err := NewRedisDispatcher(c, opts).Dispatch(ctx, &Message{Body: []byte("second of " + name)}, ""); err != nil {
			t.Fatal(err)
		}
		if err := c.Del(ctx, redisKeys(opts.Prefix).meta(""), redisKeys(opts.Prefix).stream("")).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range probes {
		if got := p.next(t); string(got.Body) != "second of "+name {
			t.Fatalf("deployment %s got %q, want its own second broadcast", name, got.Body)
		}
	}
	for name, r := range relays {
		if n := r.Malformed.Load() + r.Foreign.Load(); n != 0 {
			t.Errorf("deployment %s dropped %d payloads: a channel was shared", name, n)
		}
	}
}

// killClients closes the server side of every connection named name.
func killClients(t *testing.T, rdb redis.UniversalClient, name string) int {
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
	px := newBlackHoleProxy(t, rdb.(*redis.Client).Options().Addr)
	rcv := redis.NewClient(&redis.Options{Addr: px.addr(), DB: rdb.(*redis.Client).Options().DB})
	t.Cleanup(func() { rcv.Close() })
	opts.Instance = "B"
	b := NewRedisRelay(rcv, opts, nil)
	b.ping = 100 * time.Millisecond
	pb := startRelay(t, b)

	px.swallowCurrent()
	pb.waitSubscribed(t)
	a := NewRedisRelay(rdb, RedisOptions{Prefix: opts.Prefix, Instance: "A"}, nil)
	if err := a.Send(ctx, "B", &Message{Seq: 5, Epoch: "0000000000"}); err != nil {
		t.Fatal(err)
	}
	if got := pb.next(t); got.Seq != 5 {
		t.Fatalf("after the silent connection was replaced: got %d, want 5", got.Seq)
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
