package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// publisher publishes on one channel in confirm mode with the mandatory flag.
//
// RabbitMQ sends basic.return for an unroutable message before its basic.ack, and the
// client library hands both to us in that order on unbuffered channels. One goroutine
// reads both, so it always knows a message was returned by the time its ack arrives.
//
// That goroutine must never wait for a publisher: amqp091-go (v1.16) hands over an
// out-of-order confirm while holding the lock every Publish needs, and drops the
// confirm if we do not take it within 5 s. So publishes are serialized by seqMu, and
// the loop takes only mu, which nobody holds across a call into the library.
type publisher struct {
	ch       *amqp.Channel
	exchange string

	seqMu sync.Mutex // orders publishes with their sequence numbers

	mu      sync.Mutex // guards pending and broken; never held while publishing
	pending map[uint64]*pendingPub
	broken  error
}

type pendingPub struct {
	id       string
	returned bool
	done     chan error
}

func newPublisher(conn *amqp.Connection, exchange string) (*publisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	p := &publisher{ch: ch, exchange: exchange, pending: make(map[uint64]*pendingPub)}
	returns := ch.NotifyReturn(make(chan amqp.Return))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation))
	go p.loop(returns, confirms)
	return p, nil
}

func (p *publisher) loop(returns <-chan amqp.Return, confirms <-chan amqp.Confirmation) {
	returned := make(map[string]bool) // message ids returned and not yet confirmed
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			returned[r.MessageId] = true
		case c, ok := <-confirms:
			if !ok {
				p.fail(ErrUnavailable)
				return
			}
			p.mu.Lock()
			pp := p.pending[c.DeliveryTag]
			delete(p.pending, c.DeliveryTag)
			p.mu.Unlock()
			if pp == nil {
				continue
			}
			switch {
			case !c.Ack:
				pp.done <- fmt.Errorf("the broker refused the message (nack)")
			case returned[pp.id]:
				pp.done <- ErrUnroutable
			default:
				pp.done <- nil
			}
			delete(returned, pp.id)
		}
	}
}

// fail ends every pending publish with err, and every later one.
func (p *publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = err
	for tag, pp := range p.pending {
		pp.done <- err
		delete(p.pending, tag)
	}
}

// publishTimeout bounds the wait for a confirm when the caller set no deadline.
const publishTimeout = 10 * time.Second

func (p *publisher) publish(ctx context.Context, m Publishing) error {
	return p.publishAll(ctx, []Publishing{m})[0]
}

// publishAll publishes ms in their order on the channel and then waits for all their
// confirms together: one round trip for the lot. Each gets its own outcome; once one
// cannot be sent, the rest are not sent either (ErrUnavailable), so what reaches the
// broker is always a prefix of ms, in order.
func (p *publisher) publishAll(ctx context.Context, ms []Publishing) []error {
	errs := make([]error, len(ms))
	pps := make([]*pendingPub, len(ms))
	for i, m := range ms {
		if i > 0 && errs[i-1] != nil {
			errs[i] = fmt.Errorf("%w: an earlier message of the batch was not sent", ErrUnavailable)
			continue
		}
		pps[i], errs[i] = p.send(ctx, m)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	for i, pp := range pps {
		if pp == nil {
			continue
		}
		select {
		case errs[i] = <-pp.done:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("%w: no confirm: %v", ErrUnavailable, ctx.Err())
		}
	}
	return errs
}

// send publishes m and returns what its confirm will arrive on.
func (p *publisher) send(ctx context.Context, m Publishing) (*pendingPub, error) {
	if m.MessageID == "" {
		return nil, fmt.Errorf("publish: a message id is needed to match returns")
	}
	pp := &pendingPub{id: m.MessageID, done: make(chan error, 1)}
	p.seqMu.Lock()
	tag := p.ch.GetNextPublishSeqNo()
	p.mu.Lock()
	if p.broken != nil {
		p.mu.Unlock()
		p.seqMu.Unlock()
		return nil, p.broken
	}
	p.pending[tag] = pp
	p.mu.Unlock()
	err := p.ch.PublishWithContext(ctx, p.exchange, m.RoutingKey, true, false, amqp.Publishing{
		Headers:       m.Headers,
		ContentType:   contentType(m.Body),
		DeliveryMode:  amqp.Persistent,
		MessageId:     m.MessageID,
		CorrelationId: m.CorrelationID,
		Timestamp:     time.Now(),
		Body:          m.Body,
	})
	p.seqMu.Unlock()
	if err != nil {
		p.mu.Lock()
		delete(p.pending, tag)
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return pp, nil
}

func contentType(body []byte) string {
	if len(body) > 0 && (body[0] == '{' || body[0] == '[') {
		return "application/json"
	}
	return "application/octet-stream"
}
