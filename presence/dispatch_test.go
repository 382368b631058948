package presence

import (
	"context"
	"sync"
	"testing"
	"time"
)

// dispatchRig is a backend shared by instances A, B and C, with two dispatchers (two
// instances consuming from the broker).
type dispatchRig struct {
	disp    [2]Dispatcher
	relay   func(instance string) Relay
	connect func(e Entry)
	history History
}

var dispatchImpls = map[string]func(t *testing.T) *dispatchRig{
	"memory": func(t *testing.T) *dispatchRig {
		h, d, bus := NewMemoryHistory(1000, time.Hour), NewMemoryDirectory(), NewMemoryBus()
		disp := NewMemoryDispatcher(h, d, bus)
		return &dispatchRig{
			disp:    [2]Dispatcher{disp, disp},
			relay:   func(id string) Relay { return bus.Relay(id) },
			connect: func(e Entry) { _ = d.Add(context.Background(), e) },
			history: h,
		}
	},
	"redis": func(t *testing.T) *dispatchRig {
		rdb, opts := newTestRedis(t)
		dirs := map[string]*RedisDirectory{}
		for _, id := range []string{"A", "B", "C"} {
			o := opts
			o.Instance = id
			dirs[id] = NewRedisDirectory(rdb, o)
		}
		return &dispatchRig{
			disp: [2]Dispatcher{NewRedisDispatcher(rdb, opts), NewRedisDispatcher(rdb, opts)},
			relay: func(id string) Relay {
				o := opts
				o.Instance = id
				return NewRedisRelay(rdb, o, nil)
			},
			connect: func(e Entry) {
				if err := dirs[e.Instance].Add(context.Background(), e); err != nil {
					t.Fatal(err)
				}
			},
			history: NewRedisHistory(rdb, opts),
		}
	},
}

// sameStreams checks that got holds want, each stream in want's order.
func sameStreams(t *testing.T, got []*Message, want ...*Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	split := func(ms []*Message) map[string][]*Message {
		out := map[string][]*Message{}
		for _, m := range ms {
			out[m.UserID] = append(out[m.UserID], m)
		}
		return out
	}
	g, w := split(got), split(want)
	for user, ws := range w {
		if len(g[user]) != len(ws) {
			t.Fatalf("stream %q: got %d messages, want %d", user, len(g[user]), len(ws))
		}
		for i := range ws {
			sameRelayed(t, g[user][i], ws[i])
		}
	}
}

func dispatch(t *testing.T, d Dispatcher, m *Message, key string) bool {
	t.Helper()
	dup, err := d.Dispatch(context.Background(), m, key)
	if err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	return dup
}

func TestDispatcherContract(t *testing.T) {
	for name, mk := range dispatchImpls {
		t.Run(name, func(t *testing.T) {
			rig := mk(t)
			pa, pb, pc := startRelay(t, rig.relay("A")), startRelay(t, rig.relay("B")), startRelay(t, rig.relay("C"))
			now := time.Now()
			for _, e := range []Entry{
				{User: "u", Instance: "A", Transport: "ws", Since: now},
				{User: "u", Instance: "A", Transport: "sse", Since: now.Add(time.Second)},
				{User: "u", Instance: "B", Transport: "ws", Since: now},
				{User: "w", Instance: "C", Transport: "ws", Since: now},
			} {
				rig.connect(e)
			}

			m := &Message{UserID: "u", RoutingKey: "contract", Body: []byte{0, 0xff, 'x'}}
			dispatch(t, rig.disp[0], m, "")
			if m.Seq != 1 || m.Epoch == "" {
				t.Fatalf("dispatch set the position %v, want seq 1 of an epoch", m.Pos())
			}
			sameRelayed(t, pa.nextNew(t), m)
			sameRelayed(t, pb.nextNew(t), m)
			w := &Message{UserID: "w", RoutingKey: "k", Body: []byte("for w")}
			dispatch(t, rig.disp[1], w, "")
			sameRelayed(t, pc.nextNew(t), w) // C had nothing for u before this

			b := &Message{RoutingKey: "news", Body: []byte("all")}
			dispatch(t, rig.disp[1], b, "")
			for _, p := range []*relayProbe{pa, pb, pc} {
				sameRelayed(t, p.nextNew(t), b) // A got one copy of m: the broadcast is next
			}

			nobody := &Message{UserID: "nobody", Body: []byte("kept for later")}
			dispatch(t, rig.disp[0], nobody, "")
			wantRead(t, rig.history, "nobody", Pos{}, 10, "", nobody)

			k1 := &Message{UserID: "u", RoutingKey: "k", Body: []byte("once")}
			if dispatch(t, rig.disp[0], k1, "amqp-id-1") {
				t.Fatal("first dispatch of a key reported a duplicate")
			}
			again := &Message{UserID: "u", RoutingKey: "k", Body: []byte("once")}
			if !dispatch(t, rig.disp[1], again, "amqp-id-1") || again.Pos() != k1.Pos() {
				t.Fatalf("second dispatch of a key: %v, want a duplicate of %v", again.Pos(), k1.Pos())
			}
			after := &Message{UserID: "u", Body: []byte("after")}
			dispatch(t, rig.disp[0], after, "amqp-id-2")
			sameRelayed(t, pa.nextNew(t), k1)
			sameRelayed(t, pa.nextNew(t), after)
			wantRead(t, rig.history, "u", m.Pos(), 10, "", k1, after)
		})
	}
}

// TestDispatchBatchContract: a batch is numbered, recorded and handed out in its own
// order, each message as Dispatch would, with the dedupe key checked per message (also
// against an earlier message of the same batch).
func TestDispatchBatchContract(t *testing.T) {
	for name, mk := range dispatchImpls {
		t.Run(name, func(t *testing.T) {
			rig := mk(t)
			pa, pc := startRelay(t, rig.relay("A")), startRelay(t, rig.relay("C"))
			rig.connect(Entry{User: "u", Instance: "A", Transport: "ws", Since: time.Now()})
			rig.connect(Entry{User: "w", Instance: "C", Transport: "ws", Since: time.Now()})
			before := &Message{UserID: "u", Body: []byte("before")}
			dispatch(t, rig.disp[0], before, "")
			sameRelayed(t, pa.nextNew(t), before)
			rig.disp[0].DispatchBatch(context.Background(), nil) // nothing to do, no error

			b := []Dispatch{
				{M: &Message{UserID: "u", RoutingKey: "k", Body: []byte("one")}, Key: "id-1"},
				{M: &Message{RoutingKey: "news", Body: []byte("all")}},
				{M: &Message{UserID: "nobody", Body: []byte("kept")}},
				{M: &Message{UserID: "u", RoutingKey: "k", Body: []byte("one")}, Key: "id-1"}, // redelivered
				{M: &Message{UserID: "w", Body: []byte("for w")}},
				{M: &Message{UserID: "u", Body: []byte{0, 0xff, 't', 'w', 'o'}}, Key: "id-2"},
			}
			rig.disp[0].DispatchBatch(context.Background(), b)
			last := map[string]uint64{"u": before.Seq}
			for i, d := range b {
				if d.Err != nil {
					t.Fatalf("item %d: %v", i, d.Err)
				}
				if d.Dup != (i == 3) {
					t.Errorf("item %d: dup = %v", i, d.Dup)
				}
				if i == 3 {
					continue
				}
				if d.M.Seq != last[d.M.UserID]+1 {
					t.Fatalf("item %d numbered %d after %d: not in batch order", i, d.M.Seq, last[d.M.UserID])
				}
				last[d.M.UserID] = d.M.Seq
			}
			if b[3].M.Pos() != b[0].M.Pos() {
				t.Errorf("duplicate's position %v, want the first's %v", b[3].M.Pos(), b[0].M.Pos())
			}
			// Each stream in batch order; the broadcast channel and an instance's
			// own are apart, so the two streams may interleave either way.
			sameStreams(t, pa.nextN(t, 3), b[0].M, b[1].M, b[5].M)
			sameStreams(t, pc.nextN(t, 2), b[1].M, b[4].M)
			wantRead(t, rig.history, "u", before.Pos(), 10, "", b[0].M, b[5].M)
			wantRead(t, rig.history, "nobody", Pos{}, 10, "", b[2].M)
			wantRead(t, rig.history, "", Pos{}, 10, "", b[1].M)

			// A later batch on the other dispatcher sees the keys of this one.
			again := []Dispatch{{M: &Message{UserID: "u", Body: []byte("x")}, Key: "id-2"}}
			rig.disp[1].DispatchBatch(context.Background(), again)
			if again[0].Err != nil || !again[0].Dup || again[0].M.Pos() != b[5].M.Pos() {
				t.Fatalf("redelivery in a later batch: %+v, want a duplicate of %v", again[0], b[5].M.Pos())
			}
			end := &Message{UserID: "u", Body: []byte("end")}
			dispatch(t, rig.disp[1], end, "")
			sameRelayed(t, pa.nextNew(t), end) // nothing new was sent for the duplicates
		})
	}
}

// TestDispatcherOrder: two consumers dispatch at once, one message at a time and in
// batches; each instance receives every message meant for it exactly once, and each
// stream's in its order (a receiver that saw a message out of order would catch up).
func TestDispatcherOrder(t *testing.T) {
	for name, mk := range dispatchImpls {
		t.Run(name, func(t *testing.T) {
			rig := mk(t)
			pa, pc := startRelay(t, rig.relay("A")), startRelay(t, rig.relay("C"))
			rig.connect(Entry{User: "u", Instance: "A", Transport: "ws", Since: time.Now()})
			const per = 150
			var wg sync.WaitGroup
			for i := range rig.disp {
				wg.Go(func() {
					var batch []Dispatch // the second dispatcher sends batches of 10
					for n := range per {
						m := &Message{UserID: "u", Body: []byte{byte(i), byte(n)}}
						if n%10 == 0 {
							m.UserID = ""
						}
						if i == 0 {
							if _, err := rig.disp[i].Dispatch(context.Background(), m, ""); err != nil {
								t.Errorf("dispatch: %v", err)
								return
							}
							continue
						}
						if batch = append(batch, Dispatch{M: m}); len(batch) < 10 {
							continue
						}
						rig.disp[i].DispatchBatch(context.Background(), batch)
						for _, d := range batch {
							if d.Err != nil {
								t.Errorf("dispatch batch: %v", d.Err)
								return
							}
						}
						batch = batch[:0]
					}
				})
			}
			wg.Wait()
			// Two dispatchers' publishes may cross (a receiver catches up from the
			// history then); each dispatcher's own come in its order.
			got := map[string]map[uint64]bool{}
			last := map[[2]string]uint64{}
			for range 2 * per {
				m := pa.nextNew(t)
				if got[m.UserID] == nil {
					got[m.UserID] = map[uint64]bool{}
				}
				got[m.UserID][m.Seq] = true
				k := [2]string{m.UserID, string(m.Body[:1])}
				if m.Seq <= last[k] {
					t.Fatalf("A received %q's %d after %d from the same dispatcher", m.UserID, m.Seq, last[k])
				}
				last[k] = m.Seq
			}
			for user, n := range map[string]int{"u": 2 * (per - per/10), "": 2 * per / 10} {
				for s := 1; s <= n; s++ {
					if !got[user][uint64(s)] {
						t.Fatalf("A never received %q's %d", user, s)
					}
				}
			}
			for range 2 * per / 10 {
				if m := pc.nextNew(t); m.UserID != "" {
					t.Fatalf("C received %s's message %v", m.UserID, m.Pos())
				}
			}
			// Nothing more came: the next message anyone gets is this one.
			end := &Message{RoutingKey: "end"}
			dispatch(t, rig.disp[0], end, "")
			sameRelayed(t, pa.nextNew(t), end)
			sameRelayed(t, pc.nextNew(t), end)
		})
	}
}

// Instances says to how many instances a message went: 0 for a user connected nowhere
// (message.undelivered), one per instance holding the user, 0 for a broadcast and a
// duplicate. The message-id and correlation-id travel into the history.
func TestDispatchBatchCountsInstances(t *testing.T) {
	for name, mk := range dispatchImpls {
		t.Run(name, func(t *testing.T) {
			rig := mk(t)
			ctx := context.Background()
			rig.connect(Entry{User: "on", Instance: "A", Transport: "ws", Since: time.Now()})
			rig.connect(Entry{User: "on", Instance: "A", Transport: "sse", Since: time.Now()})
			rig.connect(Entry{User: "on", Instance: "B", Transport: "ws", Since: time.Now()})
			b := []Dispatch{
				{M: &Message{UserID: "off", RoutingKey: "k", Body: []byte("1"), MessageID: "mid-1", CorrelationID: "cid-1"}, Key: "k1"},
				{M: &Message{UserID: "on", RoutingKey: "k", Body: []byte("2")}, Key: "k2"},
				{M: &Message{RoutingKey: "k", Body: []byte("3")}},
				{M: &Message{UserID: "off", RoutingKey: "k", Body: []byte("1")}, Key: "k1"},
			}
			rig.disp[0].DispatchBatch(ctx, b)
			for i, want := range []int{0, 2, 0, 0} {
				if b[i].Err != nil {
					t.Fatalf("item %d: %v", i, b[i].Err)
				}
				if b[i].Instances != want {
					t.Errorf("item %d went to %d instances, want %d", i, b[i].Instances, want)
				}
			}
			if !b[3].Dup {
				t.Errorf("item 3 not a duplicate")
			}
			w, err := rig.history.Read(ctx, "off", Pos{}, 10, 0)
			msgs := w.Msgs
			if err != nil || len(msgs) == 0 {
				t.Fatalf("history: %v, %v", msgs, err)
			}
			if m := msgs[0]; m.MessageID != "mid-1" || m.CorrelationID != "cid-1" {
				t.Errorf("history kept message-id %q, correlation-id %q; want mid-1, cid-1", m.MessageID, m.CorrelationID)
			}
		})
	}
}
