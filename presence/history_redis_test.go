package presence

import (
	"context"
	"testing"
	"time"
)

// TestRedisHistoryLoss: what Redis loses is never passed off as a resume. A deleted
// meta starts a new epoch (old positions get a reset, seqs start again without
// clashing); a deleted stream keeps the epoch (a position at the top resumes, one below
// gets a reset).
func TestRedisHistoryLoss(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	h := NewRedisHistory(rdb, opts)
	m1 := &Message{UserID: "u", Body: []byte("1")}
	m2 := &Message{UserID: "u", Body: []byte("2")}
	appendAll(t, h, m1, m2)

	if err := rdb.Del(ctx, h.keys.stream("u")).Err(); err != nil {
		t.Fatal(err)
	}
	wantRead(t, h, "u", m2.Pos(), 10, "")
	wantRead(t, h, "u", m1.Pos(), 10, ResetExpired)
	m3 := &Message{UserID: "u", Body: []byte("3")}
	appendAll(t, h, m3)
	if m3.Pos() != (Pos{Epoch: m2.Epoch, Seq: 3}) {
		t.Errorf("after the stream was deleted: %v, want %s-3", m3.Pos(), m2.Epoch)
	}

	if err := rdb.Del(ctx, h.keys.meta("u")).Err(); err != nil {
		t.Fatal(err)
	}
	wantRead(t, h, "u", m3.Pos(), 10, ResetLost)
	m4 := &Message{UserID: "u", Body: []byte("4")}
	appendAll(t, h, m4)
	if m4.Epoch == m3.Epoch || m4.Seq != 1 {
		t.Errorf("after the meta was deleted: %v, want seq 1 of a new epoch (was %s)", m4.Pos(), m3.Epoch)
	}
	wantRead(t, h, "u", m3.Pos(), 10, ResetLost, m4)
	wantRead(t, h, "u", Pos{}, 10, "", m4)
}

// TestRedisHistoryKeysShareASlot: every key of one stream carries the same hash tag,
// so a cluster keeps them in one slot (the scripts need it), and the TTLs are set.
func TestRedisHistoryKeysShareASlot(t *testing.T) {
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.HistoryTTL = time.Minute
	h := NewRedisHistory(rdb, opts)
	appendAll(t, h, &Message{UserID: "u", Body: []byte("x")}, &Message{Body: []byte("y")})
	for _, pair := range [][2]string{{h.keys.meta("u"), h.keys.stream("u")}, {h.keys.meta(""), h.keys.stream("")}} {
		a, err1 := rdb.ClusterKeySlot(ctx, pair[0]).Result()
		b, err2 := rdb.ClusterKeySlot(ctx, pair[1]).Result()
		if err1 == nil && err2 == nil && a != b {
			t.Errorf("%s and %s: slots %d and %d", pair[0], pair[1], a, b)
		}
		for _, k := range pair {
			ttl, err := rdb.PTTL(ctx, k).Result()
			if err != nil || ttl <= 0 {
				t.Errorf("%s: ttl %v (%v), want one", k, ttl, err)
			}
		}
	}
	_ = context.Background
}
