package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ History = (*RedisHistory)(nil)

// maxClockStep is the widest gap between two samples of the history clock: the
// uncertainty, near the edge of the window, about whether a cursor is too old.
const maxClockStep = time.Second

// RedisHistory keeps the history in Redis Streams, one per user and one for the
// broadcasts, shared by every instance. Ids come from one counter, so a cursor orders
// the user's stream and the broadcast stream together and any instance resumes it.
//
// Each stream holds at most HistorySize messages and is deleted after HistoryTTL
// without a new one. What was trimmed is recorded in the stream itself (XINFO STREAM
// max-deleted-entry-id); what left with a deleted stream is bounded by the clock, a
// small stream that samples the counter over time.
type RedisHistory struct {
	rdb  redis.UniversalClient
	keys redisKeys
	size int
	ttl  time.Duration
	step time.Duration // clock sampling period
}

// NewRedisHistory returns the history under opts.Prefix, bounded by opts.HistorySize
// and opts.HistoryTTL.
func NewRedisHistory(rdb redis.UniversalClient, opts RedisOptions) *RedisHistory {
	opts = opts.withDefaults()
	step := max(min(maxClockStep, opts.HistoryTTL/10), time.Millisecond)
	return &RedisHistory{rdb: rdb, keys: redisKeys(opts.Prefix), size: opts.HistorySize, ttl: opts.HistoryTTL, step: step}
}

// historyLua is shared by the scripts: id parsing, Redis time, the clock bound, and
// appendEntry, which numbers a message and adds it to its stream.
const historyLua = `
local function num(id) return tonumber(string.match(id, '^(%d+)')) end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- lostBound: every message appended before time t has a number at most this.
local function lostBound(clock, t, head)
  local s = redis.call('XRANGE', clock, string.format('%d', t), '+', 'COUNT', 1)
  if #s == 0 then return head end
  return tonumber(s[1][2][2]) - 1
end
-- appendEntry numbers a message, adds it to stream trimmed to size and expiring after
-- ttl, and samples the clock. When it trims, or recreates a stream that expired, it
-- records in max-deleted-entry-id how far back the stream is incomplete. Returns the
-- number and the previous number in the stream ('' if none).
local function appendEntry(seqk, stream, clock, size, ttl, step, rk, body)
  local seq = redis.call('INCR', seqk)
  local now = nowms()
  local lost, prev = 0, ''
  local len = redis.call('XLEN', stream)
  if len == 0 then
    lost = lostBound(clock, now - ttl, seq - 1)
  else
    prev = string.format('%d', num(redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1][1]))
    if len >= size then
      local cut = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - size + 1)
      lost = num(cut[#cut][1])
    end
  end
  local id = string.format('%d-0', seq)
  redis.call('XADD', stream, 'MAXLEN', size, id, 'routingKey', rk, 'body', body)
  if lost > 0 then
    redis.call('XSETID', stream, id, 'MAXDELETEDID', string.format('%d-0', lost))
  end
  redis.call('PEXPIRE', stream, ttl)
  local last = redis.call('XREVRANGE', clock, '+', '-', 'COUNT', 1)
  if #last == 0 or now - num(last[1][1]) >= step then
    redis.call('XADD', clock, '*', 'seq', seq)
    redis.call('XTRIM', clock, 'MINID', string.format('%d', now - 2 * ttl))
    redis.call('PEXPIRE', clock, 2 * ttl)
  end
  return seq, prev
end
`

// appendScript records one message, in one step so ids enter every stream in order.
// KEYS: seq, stream, clock. ARGV: size, ttl ms, clock step ms, routing key, body.
// Returns the new number and the previous one in the stream ("" if none).
var appendScript = redis.NewScript(historyLua + `
local seq, prev = appendEntry(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5])
return {seq, prev}
`)

// afterScript reads what follows a cursor in the broadcast stream and the user's.
// KEYS: seq, clock, broadcast stream, [user stream]. ARGV: cursor, limit, ttl ms.
// Returns head, complete (1/0), broadcast entries, user entries.
var afterScript = redis.NewScript(historyLua + `
local c, ttl = tonumber(ARGV[1]), tonumber(ARGV[3])
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local complete = 1
local res = {}
for i = 3, #KEYS do
  local k = KEYS[i]
  if redis.call('EXISTS', k) == 1 then
    local info = redis.call('XINFO', 'STREAM', k)
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' and num(info[j + 1]) > c then complete = 0 end
    end
    res[#res + 1] = redis.call('XRANGE', k, '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
  else
    if c < lostBound(KEYS[2], nowms() - ttl, head) then complete = 0 end
    res[#res + 1] = {}
  end
end
return {string.format('%d', head), complete, res[1], res[2] or {}}
`)

func (h *RedisHistory) stream(user string) string {
	if user == "" {
		return h.keys.broadcastStream()
	}
	return h.keys.userStream(user)
}

func (h *RedisHistory) Append(ctx context.Context, m *Message) error {
	vals, err := appendScript.Run(ctx, h.rdb,
		[]string{h.keys.seq(), h.stream(m.UserID), h.keys.clock()},
		h.size, h.ttl.Milliseconds(), h.step.Milliseconds(), m.RoutingKey, m.Body,
	).Slice()
	if err != nil {
		return fmt.Errorf("history append: %w", err)
	}
	if len(vals) != 2 {
		return fmt.Errorf("history append: unexpected reply %v", vals)
	}
	seq, ok1 := vals[0].(int64)
	prev, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return fmt.Errorf("history append: unexpected reply %v", vals)
	}
	m.ID, m.Prev = FormatCursor(uint64(seq)), prev
	return nil
}

func (h *RedisHistory) After(ctx context.Context, user, cursor string, limit int) ([]*Message, bool, error) {
	after, err := ParseCursor(cursor)
	if err != nil {
		return nil, false, err
	}
	keys := []string{h.keys.seq(), h.keys.clock(), h.keys.broadcastStream()}
	if user != "" {
		keys = append(keys, h.keys.userStream(user))
	}
	vals, err := afterScript.Run(ctx, h.rdb, keys, FormatCursor(after), max(limit, 1), h.ttl.Milliseconds()).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("history after: %w", err)
	}
	if len(vals) != 4 {
		return nil, false, fmt.Errorf("history after: unexpected reply %v", vals)
	}
	head, err := strconv.ParseUint(fmt.Sprint(vals[0]), 10, 64)
	if err != nil {
		return nil, false, fmt.Errorf("history after: bad head %v", vals[0])
	}
	if after > head {
		return nil, false, ErrBadCursor
	}
	complete := vals[1] == int64(1)
	bcast, err := streamMessages(vals[2], "")
	if err != nil {
		return nil, false, err
	}
	mine, err := streamMessages(vals[3], user)
	if err != nil {
		return nil, false, err
	}
	return mergeStreams(mine, bcast, max(limit, 0)), complete, nil
}

func (h *RedisHistory) Head(ctx context.Context) (string, error) {
	n, err := h.rdb.Get(ctx, h.keys.seq()).Uint64()
	if err == redis.Nil {
		return FormatCursor(0), nil
	}
	if err != nil {
		return "", fmt.Errorf("history head: %w", err)
	}
	return FormatCursor(n), nil
}

// streamMessages decodes an XRANGE reply read inside a script.
func streamMessages(v any, user string) ([]seqMessage, error) {
	entries, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("history after: unexpected entries %T", v)
	}
	out := make([]seqMessage, 0, len(entries))
	for _, e := range entries {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("history after: unexpected entry %v", e)
		}
		id, _ := pair[0].(string)
		seq, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("history after: entry id %q: %w", id, err)
		}
		fields, _ := pair[1].([]any)
		m := &Message{ID: FormatCursor(seq), UserID: user}
		for i := 0; i+1 < len(fields); i += 2 {
			val, _ := fields[i+1].(string)
			switch fields[i] {
			case "routingKey":
				m.RoutingKey = val
			case "body":
				m.Body = []byte(val)
			}
		}
		out = append(out, seqMessage{seq: seq, m: m})
	}
	return out, nil
}
