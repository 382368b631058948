package presence

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"
)

// relayImpls return, for each implementation, a maker of connected relays by instance.
var relayImpls = map[string]func(t *testing.T) func(instance string) Relay{
	"memory": func(*testing.T) func(string) Relay {
		bus := NewMemoryBus()
		return func(id string) Relay { return bus.Relay(id) }
	},
	"redis": func(t *testing.T) func(string) Relay {
		rdb, opts := newTestRedis(t)
		return func(id string) Relay {
			o := opts
			o.Instance = id
			return NewRedisRelay(rdb, o, nil)
		}
	},
}

// relayProbe runs a relay and collects what it delivers.
type relayProbe struct {
	msgs chan *Message
	subs chan struct{}
	seen map[string]bool // stream and position of what nextNew returned
}

// startRelay runs r until the test ends and waits for its first subscription.
func startRelay(t *testing.T, r Relay) *relayProbe {
	t.Helper()
	p := &relayProbe{msgs: make(chan *Message, 1000), subs: make(chan struct{}, 10), seen: make(map[string]bool)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(ms []*Message) {
			for _, m := range ms {
				p.msgs <- m
			}
		}, func() { p.subs <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("relay run did not return after its context ended")
		}
	})
	p.waitSubscribed(t)
	return p
}

func (p *relayProbe) waitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-p.subs:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not subscribe")
	}
}

// next returns the next delivered message.
func (p *relayProbe) next(t *testing.T) *Message {
	t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no relayed message within 5s")
		return nil
	}
}

// nextNew returns the next delivered message of a position not returned before, as a
// connection takes them: a dispatcher hands a duplicate out again.
func (p *relayProbe) nextNew(t *testing.T) *Message {
	t.Helper()
	for {
		m := p.next(t)
		k := m.UserID + "\x00" + m.Pos().Epoch + "-" + strconv.FormatUint(m.Seq, 10)
		if !p.seen[k] {
			p.seen[k] = true
			return m
		}
	}
}

// nextN returns the next n messages of nextNew.
func (p *relayProbe) nextN(t *testing.T, n int) []*Message {
	t.Helper()
	out := make([]*Message, n)
	for i := range out {
		out[i] = p.nextNew(t)
	}
	return out
}

func sameRelayed(t *testing.T, got, want *Message) {
	t.Helper()
	if got.Pos() != want.Pos() || got.Time != want.Time || got.UserID != want.UserID || got.RoutingKey != want.RoutingKey || !bytes.Equal(got.Body, want.Body) {
		t.Errorf("relayed: got {%v %d %q %q %q}, want {%v %d %q %q %q}",
			got.Pos(), got.Time, got.UserID, got.RoutingKey, got.Body, want.Pos(), want.Time, want.UserID, want.RoutingKey, want.Body)
	}
}

func TestRelayContract(t *testing.T) {
	for name, mk := range relayImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			relay := mk(t)
			a, b, c := relay("A"), relay("B"), relay("C")
			pa, pb, pc := startRelay(t, a), startRelay(t, b), startRelay(t, c)

			m := &Message{Epoch: NewEpoch(), Seq: 17, Time: 1700000000000, UserID: "u", RoutingKey: "contract", Body: []byte{0, 0xff, 'x', '\n'}}
			if err := a.Send(ctx, "B", m); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pb.next(t), m)
			// C must not have had m: the first thing it gets is what is sent to it next.
			marker := &Message{Epoch: m.Epoch, Seq: 18, RoutingKey: "marker", Body: []byte("m")}
			if err := a.Send(ctx, "C", marker); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pc.next(t), marker)

			bc := &Message{Epoch: NewEpoch(), Seq: 3, RoutingKey: "news", Body: []byte(`{"all":true}`)}
			if err := a.Broadcast(ctx, bc); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pb.next(t), bc)
			sameRelayed(t, pc.next(t), bc)
			// The sender does not get its own broadcast back.
			if err := b.Send(ctx, "A", marker); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pa.next(t), marker)

			// Unrecorded messages (no ids) and empty fields cross too.
			bare := &Message{UserID: "u"}
			if err := c.Send(ctx, "B", bare); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pb.next(t), bare)

			const n = 200
			for i := range n {
				if err := a.Send(ctx, "B", &Message{Epoch: m.Epoch, Seq: uint64(100 + i), UserID: "u", Body: []byte("x")}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				if got := pb.next(t); got.Seq != uint64(100+i) {
					t.Fatalf("message %d arrived as %d: out of order", 100+i, got.Seq)
				}
			}

			if err := a.Send(ctx, "nobody-listens", m); err != nil {
				t.Errorf("send to an instance that is gone: %v", err)
			}
		})
	}
}

func TestRelayCodec(t *testing.T) {
	big := &Message{Epoch: NewEpoch(), Seq: 18446744073709551615, Time: 1700000000123, UserID: "ü s€r", RoutingKey: "k", Body: bytes.Repeat([]byte{0xfe}, 300)}
	for _, ms := range [][]*Message{
		{{}},
		{big},
		{{Epoch: big.Epoch, Seq: 1, UserID: "u", Body: []byte("one\n")}, {}, big},
	} {
		b := encodeRelay("bridge:db0:", "inst", ms...)
		got, from, err := decodeRelay("bridge:db0:", b)
		if err != nil || from != "inst" || len(got) != len(ms) {
			t.Fatalf("decode: %d messages from %q, err %v; want %d", len(got), from, err, len(ms))
		}
		for i := range ms {
			sameRelayed(t, got[i], ms[i])
		}
		last := ms[len(ms)-1]
		for i := range len(b) - len(last.Body) {
			if _, _, err := decodeRelay("bridge:db0:", b[:i]); err == nil && len(ms) == 1 {
				t.Errorf("decode of the first %d bytes: got no error", i)
			}
		}
		if _, _, err := decodeRelay("bridge:db8:", b); err != errForeignRelay {
			t.Errorf("decode in another namespace: %v, want errForeignRelay", err)
		}
		if _, _, err := decodeRelay("bridge:db0:", append(b, '7')); err == nil {
			t.Errorf("decode with a stray byte at the end: got no error")
		}
	}
}

func FuzzDecodeRelay(f *testing.F) {
	f.Add(encodeRelay("ns", "A", &Message{Epoch: NewEpoch(), Seq: 5, UserID: "u", RoutingKey: "k", Body: []byte("body")}))
	f.Add(encodeRelay("ns", "", &Message{Epoch: NewEpoch(), Seq: 5, UserID: "u", Body: []byte("a")}, &Message{Body: []byte("b")}))
	f.Add([]byte{relayVersion, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, from, err := decodeRelay("ns", b)
		if err != nil {
			return
		}
		again := encodeRelay("ns", from, ms...)
		ms2, from2, err := decodeRelay("ns", again)
		if err != nil || from2 != from || len(ms2) != len(ms) {
			t.Fatalf("round trip changed the payload: %v", err)
		}
		for i := range ms {
			if ms2[i].Pos() != ms[i].Pos() || !bytes.Equal(ms2[i].Body, ms[i].Body) {
				t.Fatalf("round trip changed message %d", i)
			}
		}
	})
}
