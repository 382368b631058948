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

// seenSet is which sequence numbers of one stream a client received, for
// -publishers above 1, where messages may arrive out of order.
type seenSet []uint64

// add marks seq and reports whether it was new.
func (s *seenSet) add(seq int64) bool {
	i := int(seq / 64)
	for len(*s) <= i {
		*s = append(*s, 0)
	}
	bit := uint64(1) << (seq % 64)
	if (*s)[i]&bit != 0 {
		return false
	}
	(*s)[i] |= bit
	return true
}
