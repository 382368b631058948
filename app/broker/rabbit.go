package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
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
	// EventsExchange, when set, is a durable topic exchange declared beside ours and
	// published to by PublishEvents (BRIDGE_EVENTS_EXCHANGE).
	EventsExchange string
	// QueueType is QueueClassic (the default) or QueueQuorum: quorum queues are
	// declared with x-delivery-limit, and RabbitMQ dead-letters a poison message.
	QueueType string
	// DeliveryLimit is how many times a message whose hand-off failed is tried again
	// before it is given up (see poison.go).
	DeliveryLimit int
	// Lanes is how many batches of one queue may be in flight at once (0 or 1: one).
	// A queue's deliveries are spread over its lanes by OrderKey; without OrderKey
	// there is one lane.
	Lanes int
	// OrderKey names what a delivery must stay in order with: deliveries with the same
	// key go to the same lane and are handled in queue order; deliveries with different
	// keys may be handled in any order. Its second result reaches the handler as the
	// delivery's Decoded. It is called from one goroutine per queue.
	OrderKey func(Delivery) (key string, decoded any)
	Logger   *slog.Logger
}

// Queue types of BRIDGE_QUEUE_TYPE.
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

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

	fails        *failures // classic queues' failed hand-offs per message
	deadLettered atomic.Int64
}

// NewRabbit returns a broker for cfg; Start connects it.
func NewRabbit(cfg RabbitConfig) *Rabbit {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueType == "" {
		cfg.QueueType = QueueClassic
	}
	return &Rabbit{
		cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), closed: make(chan struct{}), loopDone: make(chan struct{}),
		fails: newFailures(),
	}
}

func (r *Rabbit) DeadLettered() int64 { return r.deadLettered.Load() }

// TopologyError means what RabbitMQ holds contradicts the configuration: an exchange
// or queue held there with other arguments than ours, or a dead-letter exchange that
// does not exist. Reconnecting will not fix it, so the start fails with it.
type TopologyError struct {
	Hint string // what it means and what to change
	Err  error
}

func (e *TopologyError) Error() string { return e.Hint + ": " + e.Err.Error() }
func (e *TopologyError) Unwrap() error { return e.Err }

// clashHint says which setting a 406 from a declaration is about; RabbitMQ names the
// first argument that differs.
func clashHint(reason string) string {
	const base = "RabbitMQ already has this exchange or queue with other arguments than ours"
	switch {
	case strings.Contains(reason, "'x-queue-type'"):
		return base + " (another queue type: a queue cannot change type; set BRIDGE_QUEUE_TYPE to the queue's type, or delete the queue, and its messages, to have it declared anew)"
	case strings.Contains(reason, "'x-delivery-limit'"):
		return base + " (another x-delivery-limit: set BRIDGE_DELIVERY_LIMIT to the queue's, or delete the queue)"
	case strings.Contains(reason, "'x-dead-letter-exchange'"):
		return base + " (another x-dead-letter-exchange: set BRIDGE_DEAD_LETTER_EXCHANGE to the queue's, or delete the queue)"
	case strings.Contains(reason, "'x-single-active-consumer'"):
		return base + " (x-single-active-consumer differs: set BRIDGE_SINGLE_ACTIVE_CONSUMER to the queue's, or delete the queue)"
	}
	return base + " (change BRIDGE_EXCHANGE/BRIDGE_BINDINGS/BRIDGE_QUEUE_TYPE/BRIDGE_DELIVERY_LIMIT/BRIDGE_DEAD_LETTER_EXCHANGE/BRIDGE_SINGLE_ACTIVE_CONSUMER/BRIDGE_EVENTS_EXCHANGE or delete it)"
}

func (r *Rabbit) Start(ctx context.Context, handle Handler) error {
	if r.cfg.DeadLetterExchange == "" {
		r.log.Info("no BRIDGE_DEAD_LETTER_EXCHANGE: unusable and poison messages are dropped (logged and counted)")
	}
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
	conn      *amqp.Connection
	consumers []consumer // one per queue
	pub       *publisher
	events    *publisher // nil without an events exchange
	closed    chan *amqp.Error
}

// consumer is one queue's consumer on its own channel.
type consumer struct {
	ch      *amqp.Channel
	tag     string
	cancels chan string // the tag, when the broker cancelled the consumer (its queue was deleted)
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
	if err := r.checkDeadLetterExchange(conn); err != nil {
		conn.Close()
		return nil, err
	}
	if err := r.declare(conn); err != nil {
		conn.Close()
		return nil, err
	}
	if s.pub, err = newPublisher(conn, r.cfg.Exchange); err != nil {
		conn.Close()
		return nil, err
	}
	if r.cfg.EventsExchange != "" {
		if s.events, err = newPublisher(conn, r.cfg.EventsExchange); err != nil {
			conn.Close()
			return nil, err
		}
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
	var evClosed chan *amqp.Error // nil: never ready
	if s.events != nil {
		evClosed = s.events.ch.NotifyClose(make(chan *amqp.Error, 1))
	}
	broken := make(chan any, len(s.consumers))
	for _, c := range s.consumers {
		closed := c.ch.NotifyClose(make(chan *amqp.Error, 1))
		go func() { // ends when the channel does: the connection's close closes it too
			select {
			case err := <-closed:
				broken <- err
			case tag, ok := <-c.cancels:
				if !ok {
					broken <- <-closed
					return
				}
				broken <- "the broker cancelled consumer " + tag + " (its queue was deleted?)"
			}
		}()
	}
	var reason any
	select {
	case err := <-pubClosed:
		reason = err
	case reason = <-broken:
	case err := <-evClosed:
		reason = err
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
			return &TopologyError{Hint: clashHint(ae.Reason), Err: fmt.Errorf("%s: %w", what, err)}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := ch.ExchangeDeclare(r.cfg.Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return wrap("declare exchange "+r.cfg.Exchange, err)
	}
	if e := r.cfg.EventsExchange; e != "" {
		if err := ch.ExchangeDeclare(e, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return wrap("declare events exchange "+e, err)
		}
	}
	args := r.queueArgs()
	for _, q := range Queues(r.cfg.Bindings) {
		// Durable and not exclusive, as quorum queues must be.
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

// queueArgs are the arguments of every queue we declare. A classic queue carries no
// x-queue-type, as queues declared before BRIDGE_QUEUE_TYPE existed do not: naming it
// would clash with them.
func (r *Rabbit) queueArgs() amqp.Table {
	args := amqp.Table{}
	if r.cfg.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = r.cfg.DeadLetterExchange
	}
	if r.cfg.SingleActive {
		args["x-single-active-consumer"] = true
	}
	if r.cfg.QueueType == QueueQuorum {
		args["x-queue-type"] = QueueQuorum
		args["x-delivery-limit"] = int64(r.cfg.DeliveryLimit)
	}
	if len(args) == 0 {
		return nil
	}
	return args
}

// checkDeadLetterExchange makes sure the dead-letter exchange exists: RabbitMQ accepts
// a queue whose x-dead-letter-exchange names nothing, and then drops what it
// dead-letters without a word. The passive declaration has a channel of its own,
// since a failed one closes its channel.
func (r *Rabbit) checkDeadLetterExchange(conn *amqp.Connection) error {
	name := r.cfg.DeadLetterExchange
	if name == "" {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	err = ch.ExchangeDeclarePassive(name, amqp.ExchangeFanout, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return &TopologyError{
			Hint: fmt.Sprintf("BRIDGE_DEAD_LETTER_EXCHANGE: RabbitMQ has no exchange %q, so rejected and poison messages would vanish; declare it (with a queue bound to it) or unset the variable", name),
			Err:  err,
		}
	}
	if err != nil {
		return fmt.Errorf("check dead-letter exchange %s: %w", name, err)
	}
	return nil
}

func (r *Rabbit) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
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
		for _, c := range s.consumers {
			if err := c.ch.Cancel(c.tag, true); err != nil {
				r.log.Warn("cancel consumer", "tag", c.tag, "err", err)
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

// PublishEvents publishes ps to the events exchange in their order and waits for
// their confirms together; each gets its outcome as Publish would give it.
func (r *Rabbit) PublishEvents(ctx context.Context, ps []Publishing) []error {
	s := r.current()
	var err error
	switch {
	case s == nil:
		err = ErrUnavailable
	case s.events == nil:
		err = errors.New("publish events: no events exchange configured")
	default:
		return s.events.publishAll(ctx, ps)
	}
	errs := make([]error, len(ps))
	for i := range errs {
		errs[i] = err
	}
	return errs
}
