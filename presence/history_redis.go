package presence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ History = (*RedisHistory)(nil)

// RedisHistory keeps the history in Redis: per stream (a user's, the broadcasts') a
// meta hash with the epoch and the top, and a Redis Stream of the recent messages,
// both in the stream's own slot (docs/redis.md, "Keys and channels").
type RedisHistory struct {
	rdb     redis.UniversalClient
	keys    redisKeys
	size    int
	ttl     time.Duration
	metaTTL time.Duration
	now     func() time.Time
	cache   *entryCache // the entries read lately, decoded once for every reader
}

// NewRedisHistory returns the history under opts.Prefix, bounded by opts.HistorySize
// and opts.HistoryTTL.
func NewRedisHistory(rdb redis.UniversalClient, opts RedisOptions) *RedisHistory {
	opts = opts.withDefaults()
	return &RedisHistory{rdb: rdb, keys: redisKeys(opts.Prefix), size: opts.HistorySize, ttl: opts.HistoryTTL, metaTTL: metaTTL(opts.HistoryTTL), now: time.Now, cache: newEntryCache(entryCacheBytes)}
}

// historyLua is shared by the append scripts (runScripts: RUN is the run id of the
// Redis process running them): runEpoch picks the epoch, appendEntry adds a message
// to its stream.
const historyLua = `
local function fmt(n) return string.format('%d', n) end
-- runEpoch decides, from a meta's epoch e and run id r, the epoch of an append, the
-- run id to write (nil: unchanged) and the epoch refenced (nil: none). No meta: the
-- candidate c, fresh. A meta written by another run of Redis (restored from a dump
-- or an AOF that may lack the last writes, or a replica that took over): the
-- candidate too — a refence, seqs go on from the top and the entries are kept, but no
-- position given by that run is ever given again. A meta without r (written before
-- run ids were kept) is adopted.
local function runEpoch(e, r, c)
  if not e then return c, true, RUN, nil end
  if r == RUN then return e, false, nil, nil end
  if r then return c, false, RUN, e end
  return e, false, RUN, nil
end
-- appendEntry adds a message at seq s + 1 of epoch e to the stream (meta, stream),
-- whose meta held s, x, y; fresh: e is a new epoch (the meta had none), and the
-- stream is deleted (its seqs belonged to a lost epoch); run: the run id to write
-- with e (nil: both unchanged); prev: the epoch e replaces at a refence, kept with the
-- top s it had (p, q) so a reader knows which of its entries a cursor of prev has
-- (see readScript). TTLs are pushed only when
-- their mark is a tenth of the TTL old, or the stream was just made. mid and cid (the
-- AMQP message-id and correlation-id, '' if none) are kept for receipts. Returns s + 1.
local function appendEntry(meta, stream, e, s, x, y, fresh, run, prev, now, size, httl, mttl, rk, body, mid, cid)
  local set = {}
  local fields = {'r', rk, 'b', body, 't', now}
  if mid and mid ~= '' then fields[#fields + 1] = 'mid'; fields[#fields + 1] = mid end
  if cid and cid ~= '' then fields[#fields + 1] = 'cid'; fields[#fields + 1] = cid end
  if fresh then
    s, x, y = 0, 0, 0
    redis.call('DEL', stream)
  end
  if run then
    set[#set + 1] = 'e'; set[#set + 1] = e
    set[#set + 1] = 'r'; set[#set + 1] = run
  end
  if prev then
    -- The epochs refenced before prev (pp: "epoch:top;…", newest first, at most
    -- three) stay known too, so a cursor from two refences back (two failovers in a
    -- row) also gets only what it lacks.
    local o = redis.call('HMGET', meta, 'p', 'q', 'pp')
    local pp = ''
    if o[1] then
      pp = o[1] .. ':' .. (o[2] or '0')
      local n = 1
      for x in string.gmatch(o[3] or '', '[^;]+') do
        if n >= 3 then break end
        pp = pp .. ';' .. x
        n = n + 1
      end
    end
    set[#set + 1] = 'p'; set[#set + 1] = prev
    set[#set + 1] = 'q'; set[#set + 1] = s
    set[#set + 1] = 'pp'; set[#set + 1] = pp
  end
  s = s + 1
  local id = fmt(s) .. '-0'
  local made
  if not fresh then made = redis.pcall('XADD', stream, 'NOMKSTREAM', 'MAXLEN', size, id, unpack(fields)) end
  -- A key of another type is not ours to replace: the message is refused (and the
  -- consumer counts it toward the delivery limit) rather than the key deleted.
  if type(made) == 'table' and made.err and string.sub(made.err, 1, 10) == 'WRONGTYPE ' then error(made) end
  if type(made) ~= 'string' then
    -- No stream (new, expired, deleted), or one whose ids do not fit the meta: start it anew.
    if not fresh then redis.call('DEL', stream) end
    redis.call('XADD', stream, 'MAXLEN', size, id, unpack(fields))
    x = 0
  end
  if now - x >= httl / 10 or now < x then
    redis.call('PEXPIRE', stream, math.floor(httl * 11 / 10))
    set[#set + 1] = 'x'; set[#set + 1] = now
  end
  local pushMeta = now - y >= mttl / 10 or now < y
  if pushMeta then set[#set + 1] = 'y'; set[#set + 1] = now end
  redis.call('HSET', meta, 's', s, unpack(set))
  if pushMeta then redis.call('PEXPIRE', meta, mttl) end
  return s
end
`

// appendScript records one message. KEYS: meta, stream. ARGV: candidate epoch, now ms,
// size, history TTL ms, meta TTL ms, routing key, body, message-id, correlation-id.
// Returns epoch, seq. A meta written by another run of Redis gets a new epoch.
var appendScript = newRunScript(historyLua + `
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'x', 'y', 'r')
local e, fresh, run, prev = runEpoch(h[1], h[5], ARGV[1])
local s = appendEntry(KEYS[1], KEYS[2], e, tonumber(h[2] or '0'), tonumber(h[3] or '0'), tonumber(h[4] or '0'), fresh, run, prev,
  tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return {e, s}
`)

// readScript reads a stream after a position. KEYS: meta, stream. ARGV: from epoch,
// from seq, limit, max bytes (0: any), bytes counted per entry besides its body and
// routing key (MaxCursorLen, as Message.Size counts), held epoch, lo, hi. Returns
// epoch (empty if none), top, first kept seq (0 if none), and the entries after from
// — from the start when from is not a place in the stream — that fit in max bytes
// (the first always); an entry of the held epoch from lo to hi is returned as its id
// alone: the reader holds it decoded already (see entryCache.held), so Redis
// does not send its body nor the reader parse it again. It reads in short steps, so a
// read cut by its bytes does not make Redis copy a whole page.
// A cursor of the epoch the current one refenced (p) at top q had every entry up to
// min(seq, q) — the entries the refence kept are that epoch's — so its reset is
// followed by what comes after that, not by what it has already; likewise for the
// up to three epochs refenced before p (pp, "epoch:top;…").
var readScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'p', 'q', 'pp')
if not h[1] then return {'', 0, 0, {}} end
local top = tonumber(h[2] or '0')
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first = 0
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local start = '-'
local seq = tonumber(ARGV[2])
if (ARGV[1] == '' or ARGV[1] == h[1]) and seq <= top then start = '(' .. ARGV[2] .. '-0'
elseif ARGV[1] ~= '' then
  local q = nil
  if ARGV[1] == h[3] then q = tonumber(h[4] or '0') end
  for x, y in string.gmatch(h[5] or '', '(%w+):(%d+)') do
    if not q and x == ARGV[1] then q = tonumber(y) end
  end
  if q then start = '(' .. string.format('%d', math.min(seq, q)) .. '-0' end
end
local es, limit, maxb, fixed, size = {}, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), 0
local lo, hi = 1, 0
if ARGV[6] == h[1] then lo, hi = tonumber(ARGV[7]), tonumber(ARGV[8]) end
while #es < limit do
  local n = math.min(limit - #es, 64)
  local batch = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', n)
  for _, e in ipairs(batch) do
    if maxb > 0 then
      local f = e[2]
      size = size + fixed
      for j = 1, #f, 2 do
        if f[j] == 'b' or f[j] == 'r' then size = size + #f[j + 1] end
      end
      if size > maxb and #es > 0 then return {h[1], top, first, es} end
    end
    local s = tonumber(string.match(e[1], '^(%d+)'))
    if s >= lo and s <= hi then e = {e[1]} end
    es[#es + 1] = e
  end
  if #batch < n then break end
  start = '(' .. batch[#batch][1]
end
return {h[1], top, first, es}
`)

// appendArgs are the append script's keys and arguments for m.
func (h *RedisHistory) appendArgs(m *Message) (keys []string, args []any) {
	return []string{h.keys.meta(m.UserID), h.keys.stream(m.UserID)},
		[]any{NewEpoch(), h.now().UnixMilli(), h.size, h.ttl.Milliseconds(), h.metaTTL.Milliseconds(), m.RoutingKey, m.Body}
}

func (h *RedisHistory) Append(ctx context.Context, m *Message) error {
	keys, args := h.appendArgs(m)
	vals, err := appendScript.run(ctx, h.rdb, keys, append(args, m.MessageID, m.CorrelationID)...).Slice()
	if err != nil {
		return fmt.Errorf("history append: %w", err)
	}
	return setPos(m, vals, args[1].(int64))
}

// setPos reads an append's {epoch, seq} into m.
func setPos(m *Message, vals []any, now int64) error {
	if len(vals) < 2 {
		return fmt.Errorf("history append: unexpected reply %v", vals)
	}
	e, ok1 := vals[0].(string)
	s, ok2 := vals[1].(int64)
	if !ok1 || !ok2 || s <= 0 {
		return fmt.Errorf("history append: unexpected reply %v", vals)
	}
	m.Epoch, m.Seq, m.Time = e, uint64(s), now
	return nil
}

func (h *RedisHistory) Read(ctx context.Context, user string, from Pos, limit, maxBytes int) (Window, error) {
	w, err := h.read(ctx, user, from, limit, maxBytes, h.cache.held(user, from))
	if errors.Is(err, errEvicted) { // the cache dropped an entry the read left out: again, whole
		w, err = h.read(ctx, user, from, limit, maxBytes, run{})
	}
	return w, err
}

// read is Read, leaving out the entries of held (see readScript).
func (h *RedisHistory) read(ctx context.Context, user string, from Pos, limit, maxBytes int, held run) (Window, error) {
	vals, err := readScript.Run(ctx, h.rdb, []string{h.keys.meta(user), h.keys.stream(user)},
		from.Epoch, strconv.FormatUint(from.Seq, 10), max(limit, 0), max(maxBytes, 0), MaxCursorLen,
		held.epoch, strconv.FormatUint(held.lo, 10), strconv.FormatUint(held.hi, 10)).Slice()
	if err != nil {
		return Window{}, fmt.Errorf("history read: %w", err)
	}
	if len(vals) != 4 {
		return Window{}, fmt.Errorf("history read: unexpected reply %v", vals)
	}
	e, _ := vals[0].(string)
	top, _ := vals[1].(int64)
	first, _ := vals[2].(int64)
	w := Window{Top: Pos{Epoch: e, Seq: uint64(top)}}
	w.Reset = windowReset(from, w.Top, uint64(first))
	if w.Msgs, err = h.cache.messages(vals[3], user, e); err != nil {
		return Window{}, err
	}
	return w, nil
}

// messages decodes an XRANGE reply read inside a script, entries of the stream of user
// in epoch, into the messages c holds for them: an entry already decoded is not
// decoded again, and every reader of it gets the same *Message.
func (c *entryCache) messages(v any, user, epoch string) ([]*Message, error) {
	entries, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("history read: unexpected entries %T", v)
	}
	out := make([]*Message, 0, len(entries))
	for _, e := range entries {
		pair, ok := e.([]any)
		if !ok || len(pair) == 0 || len(pair) > 2 {
			return nil, fmt.Errorf("history read: unexpected entry %v", e)
		}
		id, _ := pair[0].(string)
		seq, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("history read: entry id %q: %w", id, err)
		}
		k := entryKey{user: user, epoch: epoch, seq: seq}
		m := c.get(k)
		switch {
		case m == nil && len(pair) == 1:
			return nil, errEvicted
		case m == nil:
			fields, _ := pair[1].([]any)
			m = c.put(k, entryMessage(user, epoch, seq, fields))
		}
		out = append(out, m)
	}
	return out, nil
}

// errEvicted: a read left out an entry the cache held, and the cache has dropped it
// since.
var errEvicted = errors.New("history read: a held entry left the cache")

// entryMessage makes the message of one stream entry's fields (r, b, t).
func entryMessage(user, epoch string, seq uint64, fields []any) *Message {
	m := &Message{Epoch: epoch, Seq: seq, UserID: user}
	for i := 0; i+1 < len(fields); i += 2 {
		val, _ := fields[i+1].(string)
		switch fields[i] {
		case "r":
			m.RoutingKey = val
		case "b":
			m.Body = []byte(val)
		case "t":
			m.Time, _ = strconv.ParseInt(val, 10, 64)
		case "mid":
			m.MessageID = val
		case "cid":
			m.CorrelationID = val
		}
	}
	return m
}
