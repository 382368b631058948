package presence

import (
	"context"
	"sync"
	"time"
)

var _ History = (*MemoryHistory)(nil)

// MemoryHistory is the History of a single instance: per-user and broadcast rings,
// each bounded by size and age. A stream's epoch is drawn when it is first appended
// to, so a restarted process refuses its predecessor's cursors (they get a reset).
type MemoryHistory struct {
	size int
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	streams map[string]*memStream // by user; "" is the broadcast stream
}

type memStream struct {
	epoch   string
	seq     uint64 // the top
	entries []memEntry
}

type memEntry struct {
	at time.Time
	m  *Message
}

// NewMemoryHistory keeps at most size messages per stream, for at most ttl.
func NewMemoryHistory(size int, ttl time.Duration) *MemoryHistory {
	return &MemoryHistory{size: size, ttl: ttl, now: time.Now, streams: make(map[string]*memStream)}
}

func (h *MemoryHistory) Append(_ context.Context, m *Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[m.UserID]
	if s == nil {
		s = &memStream{epoch: NewEpoch()}
		h.streams[m.UserID] = s
	}
	s.seq++
	now := h.now()
	m.Epoch, m.Seq, m.Time = s.epoch, s.seq, now.UnixMilli()
	s.entries = append(s.entries, memEntry{at: now, m: m})
	h.trim(s)
	return nil
}

// trim drops what is over size or older than ttl from the front of s.
func (h *MemoryHistory) trim(s *memStream) {
	cut := max(len(s.entries)-h.size, 0)
	oldest := h.now().Add(-h.ttl)
	for cut < len(s.entries) && s.entries[cut].at.Before(oldest) {
		cut++
	}
	if cut > 0 {
		clear(s.entries[:cut])
		s.entries = s.entries[cut:]
	}
}

func (h *MemoryHistory) Read(_ context.Context, user string, from Pos, limit, maxBytes int) (Window, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[user]
	if s == nil {
		return Window{Reset: windowReset(from, Pos{}, 0)}, nil
	}
	h.trim(s)
	top := Pos{Epoch: s.epoch, Seq: s.seq}
	var first uint64
	if len(s.entries) > 0 {
		first = s.entries[0].m.Seq
	}
	w := Window{Top: top, Reset: windowReset(from, top, first)}
	start := readStart(from, top)
	size := 0
	for _, e := range s.entries {
		if len(w.Msgs) >= limit {
			break
		}
		if e.m.Seq <= start {
			continue
		}
		if size += e.m.Size(); maxBytes > 0 && size > maxBytes && len(w.Msgs) > 0 {
			break
		}
		w.Msgs = append(w.Msgs, e.m)
	}
	return w, nil
}
