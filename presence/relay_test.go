package presence

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// relayImpls return, for each implementation, a maker of connected relays by instance
// and of senders on the same channels.
var relayImpls = map[string]func(t *testing.T) (func(instance string) Relay, func(from string) relaySender){
	"memory": func(*testing.T) (func(string) Relay, func(string) relaySender) {
		bus := NewMemoryBus()
		return func(id string) Relay { return bus.Relay(id) }, func(from string) relaySender { return memorySender{bus, from} }
	},
	"redis": func(t *testing.T) (func(string) Relay, func(string) relaySender) {
		rdb, opts := newTestRedis(t)
		return func(id string) Relay {
				o := opts
				o.Instance = id
				return NewRedisRelay(rdb, o, nil)
			}, func(from string) relaySender {
				return redisSender{rdb, redisKeys(opts.Prefix), from}
			}
	},
}

// relaySender puts messages on a relay's channels as a dispatcher does, in the order
// of the calls: the tests' stand-in for a dispatching instance.
type relaySender interface {
	// Send hands m to instance; a message to an instance that is not listening is
	// dropped without an error.
	Send(ctx context.Context, instance string, m *Message) error
	// Broadcast hands m to every instance but the sender.
	Broadcast(ctx context.Context, m *Message) error
}

type memorySender struct {
	bus  *MemoryBus
	from string
}

func (s memorySender) Send(ctx context.Context, instance string, m *Message) error {
	return s.bus.send(ctx, instance, m)
}

func (s memorySender) Broadcast(ctx context.Context, m *Message) error {
	return s.bus.broadcast(ctx, s.from, m)
}

type redisSender struct {
	rdb  redis.UniversalClient
	keys redisKeys
	from string
}

func (s redisSender) Send(ctx context.Context, instance string, m *Message) error {
	return s.publish(ctx, s.keys.relayInstance(instance), m)
}

func (s redisSender) Broadcast(ctx context.Context, m *Message) error {
	return s.publish(ctx, s.keys.relayBroadcast(), m)
}

func (s redisSender) publish(ctx context.Context, channel string, m *Message) error {
	b, err := encodeRelay(s.from, m)
	if err != nil {
		return err
	}
	return s.rdb.Publish(ctx, channel, b).Err()
}

// encodeRelay writes m as the dispatch script does (see decodeRelay): the tests' way to
// put a message on the relay's channels without a dispatcher.
func encodeRelay(from string, m *Message) ([]byte, error) {
	id, err := cursorOrZero(m.ID)
	if err != nil {
		return nil, fmt.Errorf("relay: message id: %w", err)
	}
	prev, err := cursorOrZero(m.Prev)
	if err != nil {
		return nil, fmt.Errorf("relay: message prev: %w", err)
	}
	b := make([]byte, 0, maxRelayHeader+len(from)+len(m.UserID)+len(m.RoutingKey)+len(m.Body))
	b = append(b, relayVersion)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, prev, 10)
	b = append(b, relayTail(from, m)...)
	return append(b, m.Body...), nil
}

// relayProbe runs a relay and collects what it delivers.
type relayProbe struct {
	msgs chan *Message
	subs chan struct{}
}

// startRelay runs r until the test ends and waits for its first subscription.
func startRelay(t *testing.T, r Relay) *relayProbe {
	t.Helper()
	p := &relayProbe{msgs: make(chan *Message, 1000), subs: make(chan struct{}, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(m *Message) { p.msgs <- m }, func() { p.subs <- struct{}{} })
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

func sameRelayed(t *testing.T, got, want *Message) {
	t.Helper()
	if got.ID != want.ID || got.Prev != want.Prev || got.UserID != want.UserID || got.RoutingKey != want.RoutingKey || !bytes.Equal(got.Body, want.Body) {
		t.Errorf("relayed: got {%s %s %q %q %q}, want {%s %s %q %q %q}",
			got.ID, got.Prev, got.UserID, got.RoutingKey, got.Body, want.ID, want.Prev, want.UserID, want.RoutingKey, want.Body)
	}
}

func TestRelayContract(t *testing.T) {
	for name, mk := range relayImpls {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			relay, sender := mk(t)
			pa, pb, pc := startRelay(t, relay("A")), startRelay(t, relay("B")), startRelay(t, relay("C"))
			a, b, c := sender("A"), sender("B"), sender("C")

			m := &Message{ID: "17", Prev: "12", UserID: "u", RoutingKey: "contract", Body: []byte{0, 0xff, 'x', '\n'}}
			if err := a.Send(ctx, "B", m); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pb.next(t), m)
			// C must not have had m: the first thing it gets is what is sent to it next.
			marker := &Message{ID: "18", RoutingKey: "marker", Body: []byte("m")}
			if err := a.Send(ctx, "C", marker); err != nil {
				t.Fatal(err)
			}
			sameRelayed(t, pc.next(t), marker)

			bc := &Message{ID: "19", Prev: "3", RoutingKey: "news", Body: []byte(`{"all":true}`)}
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
				if err := a.Send(ctx, "B", &Message{ID: FormatCursor(uint64(100 + i)), UserID: "u", Body: []byte("x")}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				if got := pb.next(t); got.ID != FormatCursor(uint64(100+i)) {
					t.Fatalf("message %d arrived as %s: out of order", 100+i, got.ID)
				}
			}

			if err := a.Send(ctx, "nobody-listens", m); err != nil {
				t.Errorf("send to an instance that is gone: %v", err)
			}
		})
	}
}

func TestRelayCodec(t *testing.T) {
	for _, m := range []*Message{
		{ID: "1", Prev: "", UserID: "", RoutingKey: "", Body: nil},
		{ID: "18446744073709551615", Prev: "18446744073709551614", UserID: "ü s€r", RoutingKey: "k", Body: bytes.Repeat([]byte{0xfe}, 300)},
	} {
		b, err := encodeRelay("inst", m)
		if err != nil {
			t.Fatal(err)
		}
		got, from, err := decodeRelay(b)
		if err != nil || from != "inst" {
			t.Fatalf("decode: from %q, err %v", from, err)
		}
		sameRelayed(t, got, &Message{ID: m.ID, Prev: m.Prev, UserID: m.UserID, RoutingKey: m.RoutingKey, Body: m.Body})
		for i := range len(b) - len(m.Body) {
			if _, _, err := decodeRelay(b[:i]); err == nil {
				t.Errorf("decode of the first %d bytes: got no error", i)
			}
		}
	}
	if _, err := encodeRelay("i", &Message{ID: "not-a-cursor"}); err == nil {
		t.Error("encode with a malformed id: got no error")
	}
}

func FuzzDecodeRelay(f *testing.F) {
	b, _ := encodeRelay("A", &Message{ID: "5", Prev: "2", UserID: "u", RoutingKey: "k", Body: []byte("body")})
	f.Add(b)
	f.Add([]byte{relayVersion, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, from, err := decodeRelay(b)
		if err != nil {
			return
		}
		again, err := encodeRelay(from, m)
		if err != nil {
			t.Fatalf("re-encode of a decoded message: %v", err)
		}
		if m2, from2, err := decodeRelay(again); err != nil || from2 != from || m2.ID != m.ID || !bytes.Equal(m2.Body, m.Body) {
			t.Fatalf("round trip changed the message")
		}
	})
}
