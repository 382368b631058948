package transport

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriterPool: a writer that has run waits for the next job and takes it; jobs run
// once each however many come at once; waiting writers leave after writerLinger.
func TestWriterPool(t *testing.T) {
	var p writerPool
	waiting := func() []*writerG {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([]*writerG(nil), p.idle...)
	}
	done := make(chan int, 1)
	p.run(func() { done <- 1 })
	if got := <-done; got != 1 {
		t.Fatalf("first job: got %d", got)
	}
	eventually(t, 5*time.Second, "the writer waits for more", func() bool { return len(waiting()) == 1 })
	w := waiting()[0]
	p.run(func() { done <- 2 })
	if got := <-done; got != 2 {
		t.Fatalf("second job: got %d", got)
	}
	eventually(t, 5*time.Second, "the same writer waits again", func() bool { ws := waiting(); return len(ws) == 1 && ws[0] == w })

	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		p.run(func() {
			ran.Add(1)
			wg.Done()
		})
	}
	wg.Wait()
	if n := ran.Load(); n != 200 {
		t.Errorf("200 jobs ran %d times, want 200", n)
	}
	eventually(t, writerLinger+5*time.Second, "the waiting writers left", func() bool { return len(waiting()) == 0 })
}
