package transport

import (
	"sync"
	"time"
)

// A connection has a writer only while something is queued for it (WS.kickLocked,
// SSE.kickLocked), and a broadcast wakes every connection: with a goroutine started
// per wake-up, each began on the runtime's smallest stack and outgrew it in its first
// write (the vector, the deadline, writev), so every recipient paid for a stack copy
// (runtime.newstack, a fifth of the CPU of a broadcast to idle connections; see
// BenchmarkWSWake). The writers are therefore goroutines that outlive their batch: one
// that has written waits writerLinger for the next connection to write, with the stack
// it has grown, and leaves after. An idle instance keeps none; an idle connection still
// costs no goroutine but its reader.

// writerLinger is how long a writer goroutine waits for more work: enough to carry it
// from one broadcast to the next at the rates where wake-ups cost, short enough that
// the writers of a burst are gone soon after it.
const writerLinger = time.Second

// writerPool hands writes to waiting writer goroutines, or starts one when none waits.
type writerPool struct {
	mu   sync.Mutex
	idle []*writerG // waiting, the most recently used last (its stack is the warmest)
}

// writerG is one writer goroutine.
type writerG struct {
	job   chan func() // buffered 1: the pool never waits for the writer to take it
	timer *time.Timer // fires writerLinger after its last job
}

// writers runs every connection's writer.
var writers writerPool

// run has fn run on a waiting writer, or on a new one.
func (p *writerPool) run(fn func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.job <- fn
		return
	}
	p.mu.Unlock()
	go p.work(fn)
}

// work runs fn, then whatever it is handed, until it waited writerLinger for nothing.
func (p *writerPool) work(fn func()) {
	w := &writerG{job: make(chan func(), 1)}
	for {
		fn()
		fn = nil // hold on to no connection while waiting
		if w.timer == nil {
			w.timer = time.NewTimer(writerLinger)
		} else {
			w.timer.Reset(writerLinger)
		}
		p.mu.Lock()
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		select {
		case fn = <-w.job:
		case <-w.timer.C:
			if p.leave(w) {
				return
			}
			fn = <-w.job // taken by run meanwhile: its job is on the way
		}
	}
}

// leave takes w out of the waiting writers, and reports false when it was not there
// any more (run took it).
func (p *writerPool) leave(w *writerG) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle { // the longest waiting, the likeliest to leave, come first
		if x == w {
			n := len(p.idle)
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			return true
		}
	}
	return false
}
