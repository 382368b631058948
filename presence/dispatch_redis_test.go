package presence

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisDispatchBatchFailsOnlyTheBrokenCall: a call of the pipeline that Redis
// refuses (here the user's meta key holds a string) fails alone; the calls around it
// are dispatched, in order.
func TestRedisDispatchBatchFailsOnlyTheBrokenCall(t *testing.T) {
	rdb, opts := newTestRedis(t)
	opts.Instance = "A"
	if err := NewRedisDirectory(rdb, opts).Add(context.Background(), Entry{User: "u", Instance: "A", Transport: "ws", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	pa := startRelay(t, NewRedisRelay(rdb, opts, nil))
	d := NewRedisDispatcher(rdb, opts)
	if err := rdb.Set(context.Background(), d.h.keys.meta("broken"), "not a stream", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	b := []Dispatch{
		{M: &Message{UserID: "u", Body: []byte("first")}},
		{M: &Message{UserID: "broken", Body: []byte("refused")}, Key: "id-broken"},
		{M: &Message{UserID: "u", Body: []byte("third")}},
	}
	d.DispatchBatch(context.Background(), b)
	if b[0].Err != nil || b[2].Err != nil {
		t.Fatalf("the calls around the broken one failed: %v, %v", b[0].Err, b[2].Err)
	}
	if b[1].Err == nil {
		t.Fatal("the call on a meta key holding a string succeeded")
	}
	if b[0].M.Seq != 1 || b[2].M.Seq != 2 || b[0].M.Epoch != b[2].M.Epoch {
		t.Fatalf("positions %v then %v: not in batch order", b[0].M.Pos(), b[2].M.Pos())
	}
	sameRelayed(t, pa.next(t), b[0].M)
	sameRelayed(t, pa.next(t), b[2].M)
	// The refused call left no dedupe key behind: once Redis takes it, it is dispatched.
	if err := rdb.Del(context.Background(), d.h.keys.meta("broken")).Err(); err != nil {
		t.Fatal(err)
	}
	retry := []Dispatch{{M: &Message{UserID: "broken", Body: []byte("refused")}, Key: "id-broken"}}
	d.DispatchBatch(context.Background(), retry)
	if retry[0].Err != nil || retry[0].Dup {
		t.Fatalf("retry after the failure: dup %v, err %v; want a first dispatch", retry[0].Dup, retry[0].Err)
	}
}

// TestRedisDispatchBatchWithRedisGone: with Redis unreachable every call of the batch
// fails, so every delivery is requeued.
func TestRedisDispatchBatchWithRedisGone(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "no-redis.sock") // a socket nothing listens on
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: nowhere, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	b := []Dispatch{{M: &Message{UserID: "u"}}, {M: &Message{}}, {M: &Message{UserID: "w"}, Key: "k"}}
	NewRedisDispatcher(rdb, RedisOptions{Prefix: "bridge:test_gone:"}).DispatchBatch(context.Background(), b)
	for i, d := range b {
		if d.Err == nil {
			t.Errorf("item %d dispatched with Redis gone", i)
		}
	}
}

// TestRedisDispatchBatchAfterScriptFlush: a Redis that lost its scripts (a restart)
// runs the whole batch in order, with no NOSCRIPT failure to requeue. It runs on a
// Redis of its own, as SCRIPT FLUSH is server-wide.
func TestRedisDispatchBatchAfterScriptFlush(t *testing.T) {
	rdb := privateRedis(t)
	d := NewRedisDispatcher(rdb, RedisOptions{Prefix: "bridge:test_flush:"})
	for round := range 2 {
		if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		b := []Dispatch{{M: &Message{UserID: "u"}}, {M: &Message{}}, {M: &Message{UserID: "w"}}}
		d.DispatchBatch(context.Background(), b)
		for i, x := range b {
			if x.Err != nil {
				t.Fatalf("round %d, item %d after SCRIPT FLUSH: %v", round, i, x.Err)
			}
			if want := uint64(round + 1); x.M.Seq != want {
				t.Errorf("round %d, item %d: seq %d, want %d (each stream numbers its own)", round, i, x.M.Seq, want)
			}
		}
	}
}

// privateRedis starts a redis-server of the test's own, on a unix socket in the test's
// temporary directory (no TCP port to pick, and none another process can take first),
// stopped when the test ends.
func privateRedis(t *testing.T) *redis.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (apt-get install redis-server): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	eventually(t, 10*time.Second, "the test's redis-server answering", func() bool {
		return rdb.Ping(context.Background()).Err() == nil
	})
	return rdb
}

// TestRedisDispatchRefusesAStreamOfAnotherType: a user's stream key that holds
// another type (not ours to replace) fails the dispatch with Redis's WRONGTYPE, every
// time — the message is refused, the key is left as it was — and no dedupe key is
// left behind, so a redelivery is refused again rather than taken for a duplicate.
func TestRedisDispatchRefusesAStreamOfAnotherType(t *testing.T) {
	rdb, opts := newTestRedis(t)
	ctx := context.Background()
	d := NewRedisDispatcher(rdb, opts)
	first := []Dispatch{{M: &Message{UserID: "u", Body: []byte("first")}, Key: "id-1"}}
	d.DispatchBatch(ctx, first)
	if first[0].Err != nil {
		t.Fatal(first[0].Err)
	}
	stream := d.h.keys.stream("u")
	if err := rdb.Set(ctx, stream, "not a stream", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for try := range 2 {
		b := []Dispatch{{M: &Message{UserID: "u", Body: []byte("refused")}, Key: "id-2"}}
		d.DispatchBatch(ctx, b)
		if b[0].Err == nil || b[0].Dup || !redis.HasErrorPrefix(b[0].Err, "WRONGTYPE") {
			t.Fatalf("try %d on a stream key holding a string: dup %v, err %v; want a WRONGTYPE error", try, b[0].Dup, b[0].Err)
		}
	}
	if v, err := rdb.Get(ctx, stream).Result(); err != nil || v != "not a stream" {
		t.Fatalf("the string key is now %q (%v), want it untouched", v, err)
	}
}

// TestRedisDispatchCountsFailedPublishes: a relay publish Redis refuses (here an ACL
// without PUBLISH) fails nothing — the message is in the history — and is counted in
// PublishFailed (pushbridge_relay_publish_failed_total). On a Redis of its own.
func TestRedisDispatchCountsFailedPublishes(t *testing.T) {
	rdb := privateRedis(t)
	ctx := testCtx(t)
	d := NewRedisDispatcher(rdb, RedisOptions{Prefix: "bridge:test_pubfail:"})
	if _, err := d.Dispatch(ctx, &Message{Body: []byte("published")}, ""); err != nil {
		t.Fatal(err)
	}
	if n := d.PublishFailed.Load(); n != 0 {
		t.Fatalf("%d failed publishes with PUBLISH allowed", n)
	}
	if err := rdb.Do(ctx, "ACL", "SETUSER", "default", "-publish").Err(); err != nil {
		t.Fatal(err)
	}
	m := &Message{Body: []byte("recorded, not published")}
	if _, err := d.Dispatch(ctx, m, ""); err != nil {
		t.Fatalf("a dispatch whose publish failed: %v, want it recorded", err)
	}
	if n := d.PublishFailed.Load(); n != 1 {
		t.Fatalf("%d failed publishes counted, want 1", n)
	}
	w, err := d.h.Read(ctx, "", Pos{}, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Msgs) != 2 || string(w.Msgs[1].Body) != string(m.Body) {
		t.Fatalf("the history holds %d messages, want both", len(w.Msgs))
	}
}

// TestRedisDispatchSplitsBigBatches: a batch longer than a script call takes (by
// count, maxCallMessages, and by bytes, maxCallBytes) goes out in several calls, and
// each stream is still numbered and relayed in batch order, its dedupe keys checked
// across the calls.
func TestRedisDispatchSplitsBigBatches(t *testing.T) {
	rdb, opts := newTestRedis(t)
	opts.Instance = "A"
	ctx := testCtx(t)
	dir := NewRedisDirectory(rdb, opts)
	for _, u := range []string{"u", "w"} {
		if err := dir.Add(ctx, Entry{User: u, Instance: "A", Transport: "ws", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pa := startRelay(t, NewRedisRelay(rdb, opts, nil))
	d := NewRedisDispatcher(rdb, opts)
	big := make([]byte, maxCallBytes/3)
	var b []Dispatch
	for i := range 3*maxCallMessages + 40 { // over a call's count on each stream
		m := &Message{UserID: []string{"u", "w", ""}[i%3], Body: []byte(strconv.Itoa(i))}
		if i%50 == 7 {
			m.Body = append(big[:len(big):len(big)], m.Body...)
		}
		b = append(b, Dispatch{M: m, Key: "id-" + strconv.Itoa(i)})
	}
	b = append(b, Dispatch{M: &Message{UserID: "u", Body: []byte("again")}, Key: "id-0"}) // a duplicate of the first
	if calls := d.calls(b); len(calls) < 4 {
		t.Fatalf("%d messages in %d script calls, want them split", len(b), len(calls))
	}
	d.DispatchBatch(ctx, b)
	last := map[string]uint64{}
	var want []*Message
	for i, x := range b[:len(b)-1] {
		if x.Err != nil || x.Dup {
			t.Fatalf("item %d: dup %v, err %v", i, x.Dup, x.Err)
		}
		if x.M.Seq != last[x.M.UserID]+1 {
			t.Fatalf("item %d (stream %q) numbered %d after %d: not in batch order", i, x.M.UserID, x.M.Seq, last[x.M.UserID])
		}
		last[x.M.UserID] = x.M.Seq
		want = append(want, x.M)
	}
	if dup := b[len(b)-1]; dup.Err != nil || !dup.Dup || dup.M.Pos() != b[0].M.Pos() {
		t.Fatalf("the redelivery at the end: dup %v at %v, err %v; want a duplicate of %v", dup.Dup, dup.M.Pos(), dup.Err, b[0].M.Pos())
	}
	// The broadcast channel and the instance's own are apart: each stream in order.
	sameStreams(t, pa.nextN(t, len(want)), want...)
}
