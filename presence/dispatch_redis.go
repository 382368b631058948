package presence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

var _ Dispatcher = (*RedisDispatcher)(nil)

// RedisDispatcher dispatches in two steps (docs/redis.md, "Dispatch, publish and
// dedupe"): one script per message in its stream's slot appends it, checks or records
// its dedupe key, and returns the live instances from the user's presence fields;
// then Go publishes one relay payload per destination instance per batch (an
// instance's channel is in another slot than the user, so a script cannot). The Redis
// work of a targeted message does not depend on how many instances there are.
//
// Publishes of two dispatchers may cross, and a publish may be lost; receivers see
// the gap in the stream's dense positions and catch up from the history, which holds
// the message before anything is published.
type RedisDispatcher struct {
	rdb  redis.UniversalClient
	keys redisKeys
	ns   string // relayNamespace
	h    *RedisHistory
	ttl  int64 // presence lease grace, ms

	pubMu   sync.Mutex
	pubDone chan struct{} // closed when the last relay publish started has ended; nil: none yet

	PublishFailed atomic.Int64 // relay payloads that could not be published (the history and the next beat cover them)
}

// NewRedisDispatcher records in the history of opts and publishes on its relay
// channels, for the presence under the same prefix.
func NewRedisDispatcher(rdb redis.UniversalClient, opts RedisOptions) *RedisDispatcher {
	opts = opts.withDefaults()
	return &RedisDispatcher{
		rdb: rdb, keys: redisKeys(opts.Prefix), ns: relayNamespace(rdb, opts.Prefix),
		h: NewRedisHistory(rdb, opts), ttl: leaseGrace(opts.PresenceTTL).Milliseconds(),
	}
}

// Dedupe modes of the dispatch script.
const (
	dedupeNone   = ""
	dedupeCheck  = "check"  // a position already given under the key makes it a duplicate; else recorded
	dedupeRecord = "record" // recorded for later redeliveries, not checked
)

// dispatchScript dispatches the messages of one call, in order (docs/redis.md,
// "Scripts"): per message it appends it, checks or records its dedupe key, and reads
// the live instances from the user's presence fields; the fields of instances whose
// lease (plus the grace) ended are deleted on the way. KEYS: per message meta, stream,
// dedupe key (the meta again when there is none). ARGV: candidate epoch, now ms, size,
// history TTL ms, meta TTL ms, dedupe window ms, lease grace ms; then per message
// dedupe mode, routing key, body, message-id, correlation-id. Returns per message
// {dup, epoch, seq, publish, instance…}, or an error of that message alone (its
// code first: WRONGTYPE …): publish is 0 for a duplicate of an epoch that is gone
// (nothing to send again).
var dispatchScript = newRunScript(historyLua + leaseLua + `
local cand, now, size, httl, mttl, win, grace = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local function one(meta, stream, dd, mode, rk, body, mid, cid)
  local h = redis.call('HGETALL', meta)
  local e, s, x, y, r = nil, 0, 0, 0, nil
  local live, dead = {}, {}
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    if f == 'e' then e = v
    elseif f == 's' then s = tonumber(v)
    elseif f == 'x' then x = tonumber(v)
    elseif f == 'y' then y = tonumber(v)
    elseif f == 'r' then r = v
    elseif string.sub(f, 1, 2) == 'i:' then
      local d = deadline(v)
      if d and d + grace >= now then live[#live + 1] = string.sub(f, 3) else dead[#dead + 1] = f end
    end
  end
  if #dead > 0 then redis.call('HDEL', meta, unpack(dead)) end
  local e, fresh, run, prev = runEpoch(e, r, cand)
  if fresh then s = 0 end
  if mode == 'check' then
    local old = redis.call('SET', dd, e .. '-' .. fmt(s + 1), 'NX', 'PX', win, 'GET')
    if old then
      local oe, os = string.match(old, '^(%w*)-(%d+)$')
      if fresh or oe ~= e or not os then return {1, oe or '', tonumber(os or '0'), 0} end
      return {1, oe, tonumber(os), 1, unpack(live)}
    end
  elseif mode == 'record' then
    redis.call('SET', dd, e .. '-' .. fmt(s + 1), 'PX', win)
  end
  local ok, seq = pcall(appendEntry, meta, stream, e, s, x, y, fresh, run, prev, now, size, httl, mttl, rk, body, mid, cid)
  if not ok then
    -- Nothing was appended: a redelivery must not be taken for a duplicate.
    if mode ~= '' then redis.call('DEL', dd) end
    error(seq, 0)
  end
  return {0, e, seq, 1, unpack(live)}
end
local out = {}
for j = 0, #KEYS / 3 - 1 do
  local a = 8 + 5 * j
  local ok, r = pcall(one, KEYS[3 * j + 1], KEYS[3 * j + 2], KEYS[3 * j + 3], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  -- A message Redis refuses (a key of another type) fails alone; the error's code
  -- (WRONGTYPE …) stays first, so the caller can tell what it was.
  if not ok then r = redis.error_reply(tostring(type(r) == 'table' and r.err or r)) end
  out[j + 1] = r
end
return out
`)

// A call carries at most maxCallMessages messages and, past its first message, at
// most maxCallBytes of bodies: a script runs alone on its Redis process, so a call
// is kept to about a millisecond and a megabyte.
const (
	maxCallMessages = 128
	maxCallBytes    = 1 << 20
)

func (d *RedisDispatcher) Dispatch(ctx context.Context, m *Message, key string) (bool, error) {
	b := []Dispatch{{M: m, Key: key}}
	<-d.dispatch(ctx, b)
	return b[0].Dup, b[0].Err
}

// DispatchBatch sends the messages of b in script calls of many messages each (one
// per batch on one Redis server; on a cluster, one per stream, as a script's keys
// must share a slot), all in one pipeline, then publishes what they recorded: one
// payload per destination instance, and one on the broadcast channel, each holding
// its messages in the order of b. Each call names, by hash, the copy of the script
// loaded on the Redis process serving its streams (runScript); calls a process
// answered NOSCRIPT (it restarted, was restored, took over from a master, or lost its
// scripts) ran nothing and are sent again with that process's own copy. Each message
// succeeds or fails on its own; a connection that breaks fails the calls whose reply
// did not come. A publish that fails fails nothing: the message is in the history,
// receivers catch up from it.
//
// The publish goes out behind the return (docs/redis.md, "Dispatch, publish and
// dedupe"): the caller acks and takes its next batch while it travels, so a queue's
// consumer waits for one round trip per batch, not two. Publishes leave in the order
// of their batches, and at most one is outstanding when DispatchBatch returns: it
// waits for the one before its own.
func (d *RedisDispatcher) DispatchBatch(ctx context.Context, b []Dispatch) {
	_ = d.dispatch(ctx, b)
}

// dispatch is DispatchBatch; the channel returned is closed when b's publish ended.
func (d *RedisDispatcher) dispatch(ctx context.Context, b []Dispatch) <-chan struct{} {
	if len(b) == 0 {
		return closed
	}
	calls := d.calls(b)
	pending := make([]int, len(calls))
	for i := range calls {
		pending[i] = i
	}
	for try := 0; len(pending) > 0 && try < runScriptTries; try++ {
		pending = d.runCalls(ctx, calls, pending)
	}
	rs := make([]dispatchReply, len(b))
	for _, c := range calls {
		replies(c, b, rs)
	}
	out := new(relayOut)
	for i := range b {
		b[i].Dup = rs[i].dup
		if b[i].Err == nil && !rs[i].dup && !b[i].M.Broadcast() {
			b[i].Instances = len(rs[i].to)
		}
		if b[i].Err == nil && rs[i].publish {
			out.add(b[i].M, rs[i].to)
		}
	}
	if !out.any {
		return closed
	}
	d.pubMu.Lock()
	prev, done := d.pubDone, make(chan struct{})
	d.pubDone = done
	d.pubMu.Unlock()
	// Not cut by the caller's end (a consumer stopping): what was recorded is still
	// announced; go-redis's own timeouts bound the wait.
	pctx := context.WithoutCancel(ctx)
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		if n := d.publish(pctx, out); n > 0 {
			d.PublishFailed.Add(int64(n))
		}
	}()
	if prev != nil {
		<-prev
	}
	return done
}

// closed is a closed channel: nothing to wait for.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// dispatchCall is one call of the dispatch script: the messages of a batch it
// carries, in batch order, with their keys and arguments.
type dispatchCall struct {
	at   []int // indexes in the batch
	keys []string
	args []any
	size int // bytes of the bodies
	hash string
	cmd  *redis.Cmd
}

// calls splits b into script calls. On one Redis server a call takes the messages in
// batch order until it is full (maxCallMessages, maxCallBytes); the calls run in
// that order on one connection. On a cluster the keys of a call must share a slot:
// each stream's messages go in calls of their own, in batch order, and a stream's
// calls reach its master in that order. Every message gets the time of the batch.
func (d *RedisDispatcher) calls(b []Dispatch) []*dispatchCall {
	now := d.h.now().UnixMilli()
	common := []any{nil, now, d.h.size, d.h.ttl.Milliseconds(), d.h.metaTTL.Milliseconds(), DedupeWindow.Milliseconds(), d.ttl}
	var calls []*dispatchCall
	open := map[string]*dispatchCall{} // the call taking a stream's messages; "" on one server
	byStream := isCluster(d.rdb)
	for i := range b {
		m := b[i].M
		m.Time = now
		tag := ""
		if byStream {
			tag = d.keys.tag(m.UserID)
		}
		c := open[tag]
		if c == nil || len(c.at) == maxCallMessages || c.size+len(m.Body) > maxCallBytes {
			c = &dispatchCall{args: append(make([]any, 0, len(common)+5), common...)}
			c.args[0] = NewEpoch()
			open[tag] = c
			calls = append(calls, c)
		}
		meta := d.keys.meta(m.UserID)
		dd, mode := meta, dedupeNone
		if b[i].Key != "" {
			dd, mode = d.keys.dedupe(m.UserID, hashKey(b[i].Key)), dedupeCheck
			if b[i].RecordOnly {
				mode = dedupeRecord
			}
		}
		c.at = append(c.at, i)
		c.size += len(m.Body)
		c.keys = append(c.keys, meta, d.keys.stream(m.UserID), dd)
		c.args = append(c.args, mode, m.RoutingKey, m.Body, m.MessageID, m.CorrelationID)
	}
	return calls
}

// runCalls sends the calls named by pending in one pipeline (on a cluster, go-redis
// splits it per node), and returns those answered NOSCRIPT, whose stale copies are
// forgotten so the next round loads the right ones.
func (d *RedisDispatcher) runCalls(ctx context.Context, calls []*dispatchCall, pending []int) []int {
	pipe := d.rdb.Pipeline()
	failed := map[string]error{}
	sent := 0
	for _, i := range pending {
		c := calls[i]
		h, err := dispatchScript.hash(ctx, d.rdb, c.keys[0], failed)
		if err != nil {
			c.cmd = redis.NewCmd(ctx)
			c.cmd.SetErr(err)
			continue
		}
		c.hash = h
		c.cmd = evalSha(ctx, h, c.keys, c.args)
		_ = pipe.Process(ctx, noRetryCmd{c.cmd})
		sent++
	}
	if sent > 0 {
		_, _ = pipe.Exec(ctx) // each command holds its own error
	}
	var again []int
	reloaded := false
	for _, i := range pending {
		err := calls[i].cmd.Err()
		if err != nil && !reloaded && !isNoScript(err) {
			reloadSlotsAfter(ctx, d.rdb, err)
			reloaded = true
		}
		if isNoScript(err) {
			dispatchScript.forget(calls[i].hash)
			again = append(again, i)
		}
	}
	return again
}

// relayOut is what one batch publishes: per destination instance, and broadcast.
type relayOut struct {
	order []string // instances in the order they were first named
	to    map[string][]*Message
	bcast []*Message
	any   bool
}

func (o *relayOut) add(m *Message, to []string) {
	if m.Broadcast() {
		o.bcast, o.any = append(o.bcast, m), true
		return
	}
	for _, id := range to {
		if o.to == nil {
			o.to = make(map[string][]*Message)
		}
		if _, ok := o.to[id]; !ok {
			o.order = append(o.order, id)
		}
		o.to[id], o.any = append(o.to[id], m), true
	}
}

// publish sends o in one pipeline and returns how many payloads failed. The sender
// is left empty: a dispatched broadcast goes to every instance, the dispatching one
// included.
func (d *RedisDispatcher) publish(ctx context.Context, o *relayOut) int {
	if !o.any {
		return 0
	}
	pipe := d.rdb.Pipeline()
	pub := pipe.Publish
	if isCluster(d.rdb) {
		pub = pipe.SPublish // sharded: to the shard of the channel's slot only
	}
	for _, id := range o.order {
		pub(ctx, relayInstance(d.ns, id), encodeRelay(d.ns, "", o.to[id]...))
	}
	if len(o.bcast) > 0 {
		pub(ctx, relayBroadcast(d.ns), encodeRelay(d.ns, "", o.bcast...))
	}
	cmds, _ := pipe.Exec(ctx)
	failed := 0
	for _, c := range cmds {
		if c.Err() != nil {
			failed++
		}
	}
	return failed
}

// hashKey names a dedupe key in Redis: the first 16 bytes of its SHA-256, hex, so a
// key of any length or bytes makes a short, safe key name.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// dispatchReply is what the script answered about one message.
type dispatchReply struct {
	dup     bool
	publish bool     // false for a duplicate whose epoch is gone
	to      []string // the live instances holding the user
}

// replies reads the answers of c into the messages of b it carried, and their
// replies into rs.
func replies(c *dispatchCall, b []Dispatch, rs []dispatchReply) {
	vals, err := c.cmd.Slice()
	if err == nil && len(vals) != len(c.at) {
		err = fmt.Errorf("%d replies for %d messages", len(vals), len(c.at))
	}
	for j, i := range c.at {
		if err != nil {
			b[i].Err = fmt.Errorf("dispatch: %w", err)
			continue
		}
		rs[i], b[i].Err = reply(vals[j], b[i].M)
	}
}

// reply reads the script's answer about one message into m's position.
func reply(v any, m *Message) (dispatchReply, error) {
	if err, ok := v.(error); ok {
		return dispatchReply{}, fmt.Errorf("dispatch: %w", err)
	}
	vals, _ := v.([]any)
	if len(vals) < 4 {
		return dispatchReply{}, fmt.Errorf("dispatch: unexpected reply %v", v)
	}
	if err := setPos(m, vals[1:3], m.Time); err != nil {
		return dispatchReply{}, fmt.Errorf("dispatch: %w", err)
	}
	dup, _ := vals[0].(int64)
	pub, _ := vals[3].(int64)
	r := dispatchReply{dup: dup == 1, publish: pub == 1, to: make([]string, 0, len(vals)-4)}
	for _, v := range vals[4:] {
		if id, ok := v.(string); ok {
			r.to = append(r.to, id)
		}
	}
	return r, nil
}
