package bench

import (
	"context"
	"sync"
)

// concurrentPublisher runs pub on n goroutines, so the publish rate is not bounded by
// one request's round trip. The returned publish hands a body to them (waiting while
// all are busy) and reports the first failure seen so far; wait ends them and reports
// the first failure of all. Bodies may then reach the server out of order.
func concurrentPublisher(ctx context.Context, pub func(context.Context, []byte) error, n int) (publish func(context.Context, []byte) error, wait func() error) {
	bodies := make(chan []byte, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
	for range n {
		wg.Add(1)
		go func() { // ends when wait closes bodies
			defer wg.Done()
			for b := range bodies {
				if err := pub(ctx, b); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	publish = func(ctx context.Context, b []byte) error {
		if err := failed(); err != nil {
			return err
		}
		select {
		case bodies <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var once sync.Once
	wait = func() error {
		once.Do(func() { close(bodies); wg.Wait() })
		return failed()
	}
	return publish, wait
}

// seenSet is which sequence numbers of one stream a client received, where messages
// may arrive out of order (-publishers above 1, or several -url instances each
// dispatching what it consumed).
type seenSet struct {
	bits []uint64
	upTo int64 // every sequence number 1..upTo has been seen
}

// add marks seq and reports whether it was new.
func (s *seenSet) add(seq int64) bool {
	if s.has(seq) {
		return false
	}
	i := int(seq / 64)
	for len(s.bits) <= i {
		s.bits = append(s.bits, 0)
	}
	s.bits[i] |= uint64(1) << (seq % 64)
	for s.has(s.upTo + 1) {
		s.upTo++
	}
	return true
}

func (s *seenSet) has(seq int64) bool {
	i := int(seq / 64)
	return i < len(s.bits) && s.bits[i]&(uint64(1)<<(seq%64)) != 0
}
