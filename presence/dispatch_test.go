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
		reg := NewRedisInstances(rdb, opts)
		dirs := map[string]*RedisDirectory{}
		for _, id := range []string{"A", "B", "C"} {
			if err := reg.Beat(context.Background(), Instance{ID: id, Started: time.Now()}); err != nil {
				t.Fatal(err)
			}
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
			if m.ID == "" {
				t.Fatal("dispatch did not set the id")
			}
			sameRelayed(t, pa.next(t), m)
			sameRelayed(t, pb.next(t), m)
			w := &Message{UserID: "w", RoutingKey: "k", Body: []byte("for w")}
			dispatch(t, rig.disp[1], w, "")
			sameRelayed(t, pc.next(t), w) // C had nothing for u before this

			b := &Message{RoutingKey: "news", Body: []byte("all")}
			dispatch(t, rig.disp[1], b, "")
			for _, p := range []*relayProbe{pa, pb, pc} {
				sameRelayed(t, p.next(t), b) // A got one copy of m: the broadcast is next
			}

			nobody := &Message{UserID: "nobody", Body: []byte("kept for later")}
			dispatch(t, rig.disp[0], nobody, "")
			wantAfter(t, rig.history, "nobody", b.ID, 10, true, nobody)

			k1 := &Message{UserID: "u", RoutingKey: "k", Body: []byte("once")}
			if dispatch(t, rig.disp[0], k1, "amqp-id-1") {
				t.Fatal("first dispatch of a key reported a duplicate")
			}
			again := &Message{UserID: "u", RoutingKey: "k", Body: []byte("once")}
			if !dispatch(t, rig.disp[1], again, "amqp-id-1") || again.ID != k1.ID {
				t.Fatalf("second dispatch of a key: id %s, want a duplicate of %s", again.ID, k1.ID)
			}
			after := &Message{UserID: "u", Body: []byte("after")}
			dispatch(t, rig.disp[0], after, "amqp-id-2")
			sameRelayed(t, pa.next(t), k1)
			sameRelayed(t, pa.next(t), after)
			wantAfter(t, rig.history, "u", b.ID, 10, true, k1, after)
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
			sameRelayed(t, pa.next(t), before)
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
			last := mustCursor(t, before.ID)
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
				if id := mustCursor(t, d.M.ID); id <= last {
					t.Fatalf("item %d numbered %d after %d: not in batch order", i, id, last)
				} else {
					last = id
				}
			}
			if b[3].M.ID != b[0].M.ID {
				t.Errorf("duplicate's id %s, want the first's %s", b[3].M.ID, b[0].M.ID)
			}
			if b[0].M.Prev != before.ID || b[5].M.Prev != b[0].M.ID {
				t.Errorf("prev: %q and %q, want %q and %q", b[0].M.Prev, b[5].M.Prev, before.ID, b[0].M.ID)
			}
			for _, i := range []int{0, 1, 5} {
				sameRelayed(t, pa.next(t), b[i].M)
			}
			for _, i := range []int{1, 4} {
				sameRelayed(t, pc.next(t), b[i].M)
			}
			wantAfter(t, rig.history, "u", before.ID, 10, true, b[0].M, b[1].M, b[5].M)
			wantAfter(t, rig.history, "nobody", before.ID, 10, true, b[1].M, b[2].M)

			// A later batch on the other dispatcher sees the keys of this one.
			again := []Dispatch{{M: &Message{UserID: "u", Body: []byte("x")}, Key: "id-2"}}
			rig.disp[1].DispatchBatch(context.Background(), again)
			if again[0].Err != nil || !again[0].Dup || again[0].M.ID != b[5].M.ID {
				t.Fatalf("redelivery in a later batch: %+v, want a duplicate of %s", again[0], b[5].M.ID)
			}
			end := &Message{UserID: "u", Body: []byte("end")}
			dispatch(t, rig.disp[1], end, "")
			sameRelayed(t, pa.next(t), end) // nothing was sent for the duplicates
		})
	}
}

// TestDispatcherOrder: two consumers dispatch at once, one message at a time and in
// batches; each instance receives every message meant for it exactly once and in id
// order.
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
			last := uint64(0)
			for range 2 * per {
				id := mustCursor(t, pa.next(t).ID)
				if id <= last {
					t.Fatalf("A received %d after %d", id, last)
				}
				last = id
			}
			for range 2 * per / 10 {
				if m := pc.next(t); m.UserID != "" {
					t.Fatalf("C received %s's message %s", m.UserID, m.ID)
				}
			}
			// Nothing more came: the next message anyone gets is this one.
			end := &Message{RoutingKey: "end"}
			dispatch(t, rig.disp[0], end, "")
			sameRelayed(t, pa.next(t), end)
			sameRelayed(t, pc.next(t), end)
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
			msgs, _, err := rig.history.After(ctx, "off", "0", 10)
			if err != nil || len(msgs) == 0 {
				t.Fatalf("history: %v, %v", msgs, err)
			}
			if m := msgs[0]; m.MessageID != "mid-1" || m.CorrelationID != "cid-1" {
				t.Errorf("history kept message-id %q, correlation-id %q; want mid-1, cid-1", m.MessageID, m.CorrelationID)
			}
		})
	}
}
