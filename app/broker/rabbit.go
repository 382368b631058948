package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var _ Broker = (*Rabbit)(nil)

// Reconnection pacing. We keep our own loop rather than amqp091-go's Recovery (v1.16):
// that one gives up after MaxRetryCount, and carries Channel objects across a reconnect
// without re-entering confirm mode or fencing off delivery tags of the old connection.
// Here every connection is a fresh session: new channels, new confirm mode, new
// consumers; deliveries of a dead session are redelivered by the broker.
const (
	reconnectMin = 200 * time.Millisecond
	reconnectMax = 10 * time.Second
	dialTimeout  = 5 * time.Second
)

// RabbitConfig says where the broker is and what topology to hold there.
type RabbitConfig struct {
	URL                string
	Exchange           string // direct, durable
	Bindings           []Binding
	Prefetch           int    // unacknowledged deliveries per queue
	DeadLetterExchange string // set as x-dead-letter-exchange of every queue when not empty
	// SingleActive declares the queues with x-single-active-consumer: the broker feeds
	// each queue to one consumer at a time and fails over to another, so messages are
	// handled, and numbered, in publish order across instances.
	SingleActive bool
	Logger       *slog.Logger
}

// Rabbit is the RabbitMQ broker.
type Rabbit struct {
	cfg RabbitConfig
	log *slog.Logger

	ready    atomic.Bool
	mu       sync.Mutex
	sess     *session // nil while disconnected
	stopping bool
	stop     chan struct{} // closed by StopConsuming
	closed   chan struct{} // closed by Close
	loopDone chan struct{}
	inflight sync.WaitGroup // consumer goroutines of every session
}

// NewRabbit returns a broker for cfg; Start connects it.
func NewRabbit(cfg RabbitConfig) *Rabbit {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Rabbit{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), closed: make(chan struct{}), loopDone: make(chan struct{})}
}

// TopologyError means the broker holds an exchange or queue we declare with other
// properties than ours. It is a configuration error; reconnecting will not fix it.
type TopologyError struct{ Err error }

func (e *TopologyError) Error() string {
	return fmt.Sprintf("RabbitMQ already has this exchange or queue with other arguments than ours (change BRIDGE_EXCHANGE/BRIDGE_BINDINGS/BRIDGE_DEAD_LETTER_EXCHANGE or delete it): %v", e.Err)
}
func (e *TopologyError) Unwrap() error { return e.Err }

func (r *Rabbit) Start(ctx context.Context, handle Handler) error {
	s, err := r.connect(ctx, handle)
	var te *TopologyError
	if errors.As(err, &te) {
		return err
	}
	if err != nil {
		r.log.Warn("RabbitMQ unreachable; retrying in the background", "err", err)
	}
	go r.loop(ctx, s, handle)
	return nil
}

// loop keeps a session up until Close.
func (r *Rabbit) loop(ctx context.Context, s *session, handle Handler) {
	defer close(r.loopDone)
	wait := reconnectMin
	for {
		if s != nil {
			wait = reconnectMin
			r.setSession(s)
			select {
			case err := <-s.closed:
				r.setSession(nil)
				r.log.Warn("RabbitMQ connection lost; reconnecting", "err", err)
			case <-r.closed:
				r.setSession(nil)
				s.conn.Close()
				return
			}
		}
		// Full jitter: instances that lost the broker together do not return together.
		select {
		case <-time.After(rand.N(wait) + time.Millisecond):
		case <-r.closed:
			return
		}
		wait = min(2*wait, reconnectMax)
		var err error
		s, err = r.connect(ctx, handle)
		if err != nil {
			r.log.Warn("RabbitMQ connect failed", "err", err)
		}
	}
}

func (r *Rabbit) setSession(s *session) {
	r.mu.Lock()
	r.sess = s
	r.mu.Unlock()
	r.ready.Store(s != nil)
}

func (r *Rabbit) current() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sess
}

func (r *Rabbit) Ready() bool { return r.ready.Load() }

// session is one AMQP connection with its channels.
type session struct {
	conn    *amqp.Connection
	consume *amqp.Channel
	pub     *publisher
	tags    []string
	cancels chan string // consumer tags the broker cancelled (their queue was deleted)
	closed  chan *amqp.Error
}

func (r *Rabbit) connect(ctx context.Context, handle Handler) (*session, error) {
	conn, err := amqp.DialConfig(r.cfg.URL, amqp.Config{
		Dial:       amqp.DefaultDial(dialTimeout),
		Properties: amqp.Table{"connection_name": "pushbridge"},
	})
	if err != nil {
		return nil, fmt.Errorf("dial RabbitMQ: %w", err)
	}
	s := &session{conn: conn, closed: conn.NotifyClose(make(chan *amqp.Error, 1))}
	if err := r.declare(conn); err != nil {
		conn.Close()
		return nil, err
	}
	if s.pub, err = newPublisher(conn, r.cfg.Exchange); err != nil {
		conn.Close()
		return nil, err
	}
	if err := r.consume(ctx, s, handle); err != nil {
		conn.Close()
		return nil, err
	}
	go r.watch(s)
	return s, nil
}

// watch ends the session when part of it fails while the connection stays up: a
// channel closed by a broker error (our exchange deleted: every publish would fail)
// or a consumer the broker cancelled (our queue deleted: nothing would consume it).
// Closing the connection makes the loop reconnect and declare the topology again.
// It returns when the connection closes, since that closes the channels too.
func (r *Rabbit) watch(s *session) {
	pubClosed := s.pub.ch.NotifyClose(make(chan *amqp.Error, 1))
	conClosed := s.consume.NotifyClose(make(chan *amqp.Error, 1))
	var reason any
	select {
	case err := <-pubClosed:
		reason = err
	case err := <-conClosed:
		reason = err
	case tag := <-s.cancels:
		reason = "the broker cancelled consumer " + tag + " (its queue was deleted?)"
	}
	if s.conn.IsClosed() {
		return
	}
	r.log.Warn("RabbitMQ session broken; reconnecting to declare the topology again", "reason", reason)
	s.conn.Close()
}

// declare declares the exchange, the queues and their bindings. A declaration that
// clashes with what the broker holds (406 PRECONDITION_FAILED) is a TopologyError.
func (r *Rabbit) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	wrap := func(what string, err error) error {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return &TopologyError{Err: fmt.Errorf("%s: %w", what, err)}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := ch.ExchangeDeclare(r.cfg.Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return wrap("declare exchange "+r.cfg.Exchange, err)
	}
	var args amqp.Table
	if r.cfg.DeadLetterExchange != "" {
		args = amqp.Table{"x-dead-letter-exchange": r.cfg.DeadLetterExchange}
	}
	if r.cfg.SingleActive {
		if args == nil {
			args = amqp.Table{}
		}
		args["x-single-active-consumer"] = true
	}
	for _, q := range Queues(r.cfg.Bindings) {
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return wrap("declare queue "+q, err)
		}
	}
	for _, b := range r.cfg.Bindings {
		if err := ch.QueueBind(b.Queue, b.Key, r.cfg.Exchange, false, nil); err != nil {
			return wrap("bind queue "+b.Queue, err)
		}
	}
	return nil
}

// consume starts one consumer goroutine per queue on one channel.
func (r *Rabbit) consume(ctx context.Context, s *session, handle Handler) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open consumer channel: %w", err)
	}
	if err := ch.Qos(r.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch: %w", err)
	}
	s.consume = ch
	s.cancels = ch.NotifyCancel(make(chan string, len(r.cfg.Bindings)))
	if r.isStopping() { // draining: publish, but take no new deliveries
		return nil
	}
	for i, q := range Queues(r.cfg.Bindings) {
		tag := fmt.Sprintf("pushbridge-%d", i)
		ds, err := ch.Consume(q, tag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s: %w", q, err)
		}
		s.tags = append(s.tags, tag)
		// Checked with the Add as one step, so no Add can race StopConsuming's Wait.
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return nil
		}
		r.inflight.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.inflight.Done()
			done := make(chan struct{})
			defer close(done)
			buf := r.buffer(ds, done)
			for {
				// A stop ends the loop after the batch in hand, whichever session
				// this is: one that connected while the stop began may never have had
				// its consumers cancelled. What is still buffered stays
				// unacknowledged and the broker hands it to another consumer.
				select {
				case <-r.stop:
					return
				case d, ok := <-buf:
					if !ok {
						return
					}
					batch := take(buf, d)
					if ch.IsClosed() {
						// The broker redelivers them: handled now, they would be
						// dispatched twice, since none could be acked.
						return
					}
					r.settle(batch, handle(context.WithoutCancel(ctx), deliveries(q, batch)))
				}
			}
		}()
	}
	return nil
}

// buffer forwards ds into a buffered channel as fast as the library hands them over.
// The library's channel is unbuffered: a receive that must not wait finds a delivery
// there only while the library's goroutine is parked on the send, which it is not
// right after the previous one. This one fills while a batch is being handled, so the
// next batch is what has arrived meanwhile. It ends when ds closes or done does.
func (r *Rabbit) buffer(ds <-chan amqp.Delivery, done <-chan struct{}) <-chan amqp.Delivery {
	buf := make(chan amqp.Delivery, min(max(r.cfg.Prefetch, 1), maxBatch))
	go func() {
		defer close(buf)
		for d := range ds {
			select {
			case buf <- d:
			case <-done:
				return
			}
		}
	}()
	return buf
}

// take returns first and what buf already holds after it, up to maxBatch, without
// waiting for more.
func take(buf <-chan amqp.Delivery, first amqp.Delivery) []amqp.Delivery {
	batch := []amqp.Delivery{first}
	for len(batch) < maxBatch {
		select {
		case d, ok := <-buf:
			if !ok {
				return batch
			}
			batch = append(batch, d)
		default:
			return batch
		}
	}
	return batch
}

func deliveries(queue string, batch []amqp.Delivery) []Delivery {
	out := make([]Delivery, len(batch))
	for i, d := range batch {
		out[i] = Delivery{
			Queue: queue, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers,
			MessageID: d.MessageId, Redelivered: d.Redelivered,
		}
	}
	return out
}

func (r *Rabbit) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

// settle acks or rejects each delivery of a batch at once, and requeues the rest
// after one pause, so a dependency that is down is not hammered. Each is settled on
// its own: the channel's delivery tags interleave the queues, so one ack with
// multiple set would also ack deliveries another queue's goroutine still holds.
func (r *Rabbit) settle(batch []amqp.Delivery, outcomes []Outcome) {
	var requeue []amqp.Delivery
	for i, d := range batch {
		switch outcomes[i] {
		case Ack:
			r.settled(d.Ack(false))
		case Reject:
			r.settled(d.Reject(false)) // to the dead-letter exchange, where one is set
		case Requeue:
			requeue = append(requeue, d)
		}
	}
	if len(requeue) == 0 {
		return
	}
	select {
	case <-time.After(requeuePause):
	case <-r.stop:
	case <-r.closed:
	}
	for _, d := range requeue {
		r.settled(d.Nack(false, true))
	}
}

func (r *Rabbit) settled(err error) {
	if err != nil {
		// The channel is gone; the broker redelivers what we did not settle.
		r.log.Debug("settle delivery", "err", err)
	}
}

func (r *Rabbit) StopConsuming(ctx context.Context) {
	r.mu.Lock()
	if !r.stopping {
		r.stopping = true
		close(r.stop)
	}
	s := r.sess
	r.mu.Unlock()
	if s != nil {
		// So the broker sends what is queued to other instances from now on. No wait
		// for cancel-ok: on a half-dead connection it could outlast the drain.
		for _, tag := range s.tags {
			if err := s.consume.Cancel(tag, true); err != nil {
				r.log.Warn("cancel consumer", "tag", tag, "err", err)
			}
		}
	}
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.log.Warn("deliveries still in flight at shutdown; the broker will redeliver them")
	}
}

func (r *Rabbit) Close() error {
	r.mu.Lock()
	select {
	case <-r.closed:
		r.mu.Unlock()
		return nil
	default:
	}
	close(r.closed)
	r.mu.Unlock()
	<-r.loopDone
	return nil
}

func (r *Rabbit) Publish(ctx context.Context, p Publishing) error {
	s := r.current()
	if s == nil {
		return ErrUnavailable
	}
	return s.pub.publish(ctx, p)
}
