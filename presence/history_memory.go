package presence

import (
	"context"
	"sync"
	"time"
)

var _ History = (*MemoryHistory)(nil)

// MemoryHistory is the History of a single instance: per-user and broadcast rings,
// each bounded by size and age.
type MemoryHistory struct {
	size int
	ttl  time.Duration
	now  func() time.Time

	// base is the cursor this history starts from. It is the start time in microseconds,
	// so a restarted process hands out cursors above every cursor of the process before
	// it, and an old cursor is recognised as unknown instead of silently skipping the
	// new process's first messages.
	base uint64

	mu      sync.Mutex
	seq     uint64
	streams map[string]*memStream // by user; "" is the broadcast stream
}

type memStream struct {
	entries []memEntry
	trimmed uint64 // highest sequence number dropped from this stream
}

type memEntry struct {
	seq uint64
	at  time.Time
	m   *Message
}

func (e memEntry) numbered() (uint64, *Message) { return e.seq, e.m }

// NewMemoryHistory keeps at most size messages per stream, for at most ttl.
func NewMemoryHistory(size int, ttl time.Duration) *MemoryHistory {
	base := uint64(time.Now().UnixMicro())
	return &MemoryHistory{size: size, ttl: ttl, now: time.Now, base: base, seq: base, streams: make(map[string]*memStream)}
}

func (h *MemoryHistory) Append(_ context.Context, m *Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	m.ID = FormatCursor(h.seq)
	s := h.streams[m.UserID]
	if s == nil {
		s = &memStream{}
		h.streams[m.UserID] = s
	}
	h.trim(s)
	m.Prev = ""
	if n := len(s.entries); n > 0 {
		m.Prev = FormatCursor(s.entries[n-1].seq)
	}
	s.entries = append(s.entries, memEntry{seq: h.seq, at: h.now(), m: m})
	h.trim(s)
	return nil
}

// trim drops what is over size or older than ttl from the front of s.
func (h *MemoryHistory) trim(s *memStream) {
	cut := 0
	if over := len(s.entries) - h.size; over > 0 {
		cut = over
	}
	oldest := h.now().Add(-h.ttl)
	for cut < len(s.entries) && s.entries[cut].at.Before(oldest) {
		cut++
	}
	if cut == 0 {
		return
	}
	s.trimmed = s.entries[cut-1].seq
	clear(s.entries[:cut])
	s.entries = s.entries[cut:]
}

func (h *MemoryHistory) After(_ context.Context, user, cursor string, limit int) ([]*Message, bool, error) {
	after, err := ParseCursor(cursor)
	if err != nil {
		return nil, false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// 0 is before everything: the window from its start, complete only if nothing left.
	if after > h.seq || (after != 0 && after < h.base) {
		return nil, false, ErrBadCursor
	}
	complete := after >= h.base
	var a, b []memEntry
	for i, name := range []string{user, ""} {
		s := h.streams[name]
		if s == nil || (i == 0 && user == "") {
			continue
		}
		h.trim(s)
		if s.trimmed > after {
			complete = false
		}
		es := s.entries
		lo := 0
		for lo < len(es) && es[lo].seq <= after {
			lo++
		}
		if i == 0 {
			a = es[lo:]
		} else {
			b = es[lo:]
		}
	}
	return mergeStreams(a, b, limit), complete, nil
}

func (h *MemoryHistory) Head(context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return FormatCursor(h.seq), nil
}
