package presence

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushbridge/pushbridge/presence/redistest"
)

// persistedRedis starts a redis-server of the test's own on a unix socket with its
// data in dir (args choose RDB or AOF); Restart on the returned Proc kills it with
// SIGKILL and starts it again on the same files.
func persistedRedis(t *testing.T, args ...string) (*redistest.Proc, *redis.Client) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	p, err := redistest.StartProc(t, dir, append([]string{"--port", "0", "--unixsocket", sock, "--dir", dir}, args...)...)
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return p, rdb
}

// dispatchAfterRestart dispatches m, calling again while the client's pooled
// connections to the killed process fail (nothing ran on them).
func dispatchAfterRestart(t *testing.T, d *RedisDispatcher, m *Message) {
	t.Helper()
	var err error
	eventually(t, 10*time.Second, "a dispatch on the restarted redis-server", func() bool {
		_, err = d.Dispatch(context.Background(), m, "")
		return err == nil
	})
}

// TestRunIDRefence: a Redis restarted from its RDB or AOF holds metas written by
// another run of Redis (docs/redis.md, "What each failure does"). With a dump older
// than the last writes, a cursor beyond the restored top is never trusted (reset),
// and the next append starts a new epoch, its seq going on from the restored top: no
// position given before the restart is ever given to another message. Without loss
// (a dump after the last write, AOF everysec killed with SIGKILL) the cursors at the
// top get the documented single reset, and resume exactly after it. After a reset a
// cursor gets only what it lacks: the kept entries are the old epoch's, up to the top
// the refence found.
func TestRunIDRefence(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		saved int  // messages per stream in the dump (the rest are lost by the restart); 0: none lost
		dump  bool // RDB: SAVE after the last write when none is lost
	}{
		{"rdb_lost_writes", []string{"--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"}, 3, true},
		{"rdb", []string{"--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"}, 0, true},
		{"aof_everysec", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "everysec"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc, rdb := persistedRedis(t, tc.args...)
			ctx := testCtx(t)
			opts := RedisOptions{Prefix: "bridge:runid:"}
			d := NewRedisDispatcher(rdb, opts)
			h := NewRedisHistory(rdb, opts)
			const sent = 5
			// Per stream, what each position was given to: user u and v's streams
			// through the dispatcher, w's through History.Append, and the broadcasts.
			streams := []string{"u", "v", ""}
			given := map[string]map[Pos]string{}
			for _, s := range append(streams, "w") {
				given[s] = map[Pos]string{}
			}
			for i := 1; i <= sent; i++ {
				for _, s := range streams {
					m := &Message{UserID: s, Body: []byte("before-" + strconv.Itoa(i))}
					if _, err := d.Dispatch(ctx, m, ""); err != nil {
						t.Fatal(err)
					}
					given[s][m.Pos()] = string(m.Body)
				}
				m := &Message{UserID: "w", Body: []byte("before-" + strconv.Itoa(i))}
				if err := h.Append(ctx, m); err != nil {
					t.Fatal(err)
				}
				given["w"][m.Pos()] = string(m.Body)
				if i == tc.saved {
					if err := rdb.Save(ctx).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.saved == 0 && tc.dump {
				if err := rdb.Save(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			last := map[string]Pos{}
			for _, s := range append(streams, "w") {
				for p := range given[s] {
					if p.Seq > last[s].Seq {
						last[s] = p
					}
				}
			}
			runBefore := runID(t, rdb)
			if err := proc.Restart(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the restarted redis-server answering", func() bool {
				return rdb.Ping(context.Background()).Err() == nil
			})
			if runID(t, rdb) == runBefore {
				t.Fatal("the restarted redis-server has the same run id")
			}
			restored := uint64(sent)
			if tc.saved > 0 {
				restored = uint64(tc.saved)
			}
			for _, s := range append(streams, "w") {
				w, err := h.Read(ctx, s, last[s], 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if w.Top != (Pos{Epoch: last[s].Epoch, Seq: restored}) {
					t.Fatalf("stream %q restored at %v, want %s-%d", s, w.Top, last[s].Epoch, restored)
				}
				want := ""
				if tc.saved > 0 {
					want = ResetUnknown // positions beyond the restored top are never trusted
				}
				if w.Reset != want {
					t.Errorf("stream %q: cursor %v on a Redis restored at %v before any append: reset %q, want %q", s, last[s], w.Top, w.Reset, want)
				}
			}
			// The first append after the restart: a new epoch, seqs going on.
			after := map[string]Pos{}
			for i := 1; i <= 2; i++ {
				for _, s := range append(streams, "w") {
					m := &Message{UserID: s, Body: []byte("after-" + strconv.Itoa(i))}
					if s == "w" {
						err := errors.New("not yet")
						eventually(t, 10*time.Second, "an append on the restarted redis-server", func() bool {
							err = h.Append(context.Background(), m)
							return err == nil
						})
					} else {
						dispatchAfterRestart(t, d, m)
					}
					p := m.Pos()
					if p.Epoch == last[s].Epoch {
						t.Fatalf("stream %q: append after the restart kept epoch %s (run id not checked)", s, p.Epoch)
					}
					if want := restored + uint64(i); p.Seq != want {
						t.Fatalf("stream %q: append after the restart at seq %d, want %d (going on from the restored top)", s, p.Seq, want)
					}
					if b, ok := given[s][p]; ok {
						t.Fatalf("stream %q: position %v given again (was %q, now %q)", s, p, b, m.Body)
					}
					given[s][p] = string(m.Body)
					after[s] = p
				}
			}
			for _, s := range append(streams, "w") {
				// Every cursor made before the restart: one reset, never a silent skip;
				// then what it lacks of the kept entries and the new ones, nothing it has.
				for p := range given[s] {
					if p.Epoch != last[s].Epoch {
						continue
					}
					w, err := h.Read(ctx, s, p, 100, 0)
					if err != nil {
						t.Fatal(err)
					}
					if w.Reset != ResetLost {
						t.Errorf("stream %q: cursor %v made before the restart: reset %q, want %q", s, p, w.Reset, ResetLost)
					}
					from := min(p.Seq, restored) + 1
					if len(w.Msgs) == 0 || w.Msgs[0].Seq != from || w.Msgs[len(w.Msgs)-1].Pos() != after[s] {
						t.Errorf("stream %q: cursor %v made before the restart is followed by %d messages from %v, want seq %d to %v", s, p, len(w.Msgs), w.Msgs, from, after[s])
					}
				}
				// The window is whole: the kept entries and the new ones, under the new epoch.
				w, err := h.Read(ctx, s, Pos{}, 100, 0)
				if err != nil {
					t.Fatal(err)
				}
				if uint64(len(w.Msgs)) != restored+2 || w.Msgs[0].Seq != 1 || w.Top != after[s] {
					t.Errorf("stream %q: window of %d messages from seq %d up to %v, want %d from 1 up to %v", s, len(w.Msgs), w.Msgs[0].Seq, w.Top, restored+2, after[s])
				}
				for _, m := range w.Msgs[restored:] {
					if b := given[s][m.Pos()]; b != string(m.Body) {
						t.Errorf("stream %q: %v holds %q, want %q", s, m.Pos(), m.Body, b)
					}
				}
				// A cursor given after the restart resumes exactly.
				first := Pos{Epoch: after[s].Epoch, Seq: after[s].Seq - 1}
				w, err = h.Read(ctx, s, first, 100, 0)
				if err != nil {
					t.Fatal(err)
				}
				if w.Reset != "" || len(w.Msgs) != 1 || w.Msgs[0].Pos() != after[s] {
					t.Errorf("stream %q: cursor %v after the restart: reset %q, %d messages; want exactly %v", s, first, w.Reset, len(w.Msgs), after[s])
				}
			}
		})
	}
}

// runID is the run id of the Redis behind rdb.
func runID(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	id, err := parseRunID(info)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRunIDAdoptsAnOlderMeta: a meta written before run ids were kept (no r field) is
// adopted by the next append — r written, the epoch kept — rather than refenced, so an
// upgrade costs no client a reset.
func TestRunIDAdoptsAnOlderMeta(t *testing.T) {
	rdb, opts := newTestRedis(t)
	ctx := testCtx(t)
	d := NewRedisDispatcher(rdb, opts)
	first := &Message{UserID: "old", Body: []byte("1")}
	if _, err := d.Dispatch(ctx, first, ""); err != nil {
		t.Fatal(err)
	}
	meta := d.keys.meta("old")
	if err := rdb.HDel(ctx, meta, "r").Err(); err != nil {
		t.Fatal(err)
	}
	second := &Message{UserID: "old", Body: []byte("2")}
	if _, err := d.Dispatch(ctx, second, ""); err != nil {
		t.Fatal(err)
	}
	if second.Epoch != first.Epoch || second.Seq != 2 {
		t.Fatalf("append after a meta without r at %v, want %s-2", second.Pos(), first.Epoch)
	}
	if r, err := rdb.HGet(ctx, meta, "r").Result(); err != nil || r == "" {
		t.Fatalf("meta's r after the adopting append: %q (%v), want the run id", r, err)
	}
}

// TestRunIDRefenceChain: after several refences in a row (a failover, then another
// before the clients came back), a cursor of any of the last four epochs gets its
// reset and then only what it lacks; one from further back gets the whole window.
func TestRunIDRefenceChain(t *testing.T) {
	proc, rdb := persistedRedis(t, "--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb")
	ctx := testCtx(t)
	opts := RedisOptions{Prefix: "bridge:runid:"}
	d := NewRedisDispatcher(rdb, opts)
	h := NewRedisHistory(rdb, opts)
	const restarts = 5
	var tops []Pos // the last position given in each epoch, oldest first
	for r := 0; r <= restarts; r++ {
		var last Pos
		for i := range 2 {
			m := &Message{UserID: "u", Body: []byte(fmt.Sprintf("run-%d-%d", r, i))}
			dispatchAfterRestart(t, d, m)
			last = m.Pos()
		}
		if len(tops) > 0 && last.Epoch == tops[len(tops)-1].Epoch {
			t.Fatalf("restart %d: epoch %s kept", r, last.Epoch)
		}
		tops = append(tops, last)
		if r == restarts {
			break
		}
		if err := rdb.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := proc.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	top := tops[restarts]
	for k, p := range tops[:restarts] {
		back := restarts - k
		w, err := h.Read(ctx, "u", p, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		from := p.Seq + 1 // it has everything up to its position: nothing was lost
		if back > 4 {
			from = 1 // older than the chain keeps: the whole window
		}
		if w.Reset != ResetLost || len(w.Msgs) == 0 || w.Msgs[0].Seq != from || w.Msgs[len(w.Msgs)-1].Pos() != top {
			first := uint64(0)
			if len(w.Msgs) > 0 {
				first = w.Msgs[0].Seq
			}
			t.Errorf("cursor %v, %d refences back: reset %q, %d messages from seq %d; want %q, then seq %d to %v", p, back, w.Reset, len(w.Msgs), first, ResetLost, from, top)
		}
	}
}
