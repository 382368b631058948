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

// dispatchScript: KEYS: meta, stream, [dedupe key]. ARGV: candidate epoch, now ms,
// size, history TTL ms, meta TTL ms, routing key, body, dedupe mode, dedupe window ms,
// lease grace ms, message-id, correlation-id. Returns {dup, epoch, seq, publish, instance…}: publish is 0 for a
// duplicate of an epoch that is gone (nothing to send again), and the instances are
// those whose presence lease (plus the grace) is still running; the fields of the
// others are deleted on the way.
var dispatchScript = newRunScript(historyLua + leaseLua + `
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[10])
local h = redis.call('HGETALL', KEYS[1])
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
if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end
local e, fresh, run, prev = runEpoch(e, r, ARGV[1])
if fresh then s = 0 end
local mode = ARGV[8]
if mode == 'check' then
  local old = redis.call('SET', KEYS[3], e .. '-' .. fmt(s + 1), 'NX', 'PX', ARGV[9], 'GET')
  if old then
    local oe, os = string.match(old, '^(%w*)-(%d+)$')
    if fresh or oe ~= e or not os then return {1, oe or '', tonumber(os or '0'), 0} end
    return {1, oe, tonumber(os), 1, unpack(live)}
  end
elseif mode == 'record' then
  redis.call('SET', KEYS[3], e .. '-' .. fmt(s + 1), 'PX', ARGV[9])
end
local ok, seq = pcall(appendEntry, KEYS[1], KEYS[2], e, s, x, y, fresh, run, prev, now, ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[11], ARGV[12])
if not ok then
  -- Nothing was appended: a redelivery must not be taken for a duplicate.
  if mode ~= '' then redis.call('DEL', KEYS[3]) end
  -- The error's code (WRONGTYPE …) stays first, so the caller can tell what it was.
  return redis.error_reply(tostring(seq.err or seq))
end
return {0, e, seq, 1, unpack(live)}
`)

func (d *RedisDispatcher) Dispatch(ctx context.Context, m *Message, key string) (bool, error) {
	b := []Dispatch{{M: m, Key: key}}
	<-d.dispatch(ctx, b)
	return b[0].Dup, b[0].Err
}

// DispatchBatch sends the script calls of b in one pipeline, then publishes what they
// recorded in a second: one payload per destination instance, and one on the
// broadcast channel, each holding its messages in the order of b. Each call names,
// by hash, the copy of the script loaded on the Redis process serving its stream
// (runScript); calls a process answered NOSCRIPT (it restarted, was restored, took
// over from a master, or lost its scripts) ran nothing and are sent again with that
// process's own copy. Each call succeeds or fails on its own; a connection that breaks
// fails the ones whose reply did not come. A publish that fails fails nothing: the
// message is in the history, receivers catch up from it.
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
	cmds := make([]*redis.Cmd, len(b))
	pending := make([]int, len(b))
	for i := range b {
		pending[i] = i
	}
	for try := 0; len(pending) > 0 && try < runScriptTries; try++ {
		pending = d.runCalls(ctx, b, cmds, pending)
	}
	out := new(relayOut)
	for i := range b {
		var r dispatchReply
		r, b[i].Err = d.reply(cmds[i], b[i].M)
		b[i].Dup = r.dup
		if b[i].Err == nil && !r.dup && !b[i].M.Broadcast() {
			b[i].Instances = len(r.to)
		}
		if b[i].Err == nil && r.publish {
			out.add(b[i].M, r.to)
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

// runCalls sends the calls of b named by pending in one pipeline (on a cluster,
// go-redis splits it per node) into cmds, and returns those answered NOSCRIPT, whose
// stale copies are forgotten so the next round loads the right ones.
func (d *RedisDispatcher) runCalls(ctx context.Context, b []Dispatch, cmds []*redis.Cmd, pending []int) []int {
	pipe := d.rdb.Pipeline()
	hashes := make([]string, len(b))
	failed := map[string]error{}
	sent := 0
	for _, i := range pending {
		keys, args := d.args(&b[i])
		h, err := dispatchScript.hash(ctx, d.rdb, keys[0], failed)
		if err != nil {
			cmds[i] = redis.NewCmd(ctx)
			cmds[i].SetErr(err)
			continue
		}
		hashes[i] = h
		cmds[i] = evalSha(ctx, h, keys, args)
		_ = pipe.Process(ctx, noRetryCmd{cmds[i]})
		sent++
	}
	if sent > 0 {
		_, _ = pipe.Exec(ctx) // each command holds its own error
	}
	var again []int
	reloaded := false
	for _, i := range pending {
		if err := cmds[i].Err(); err != nil && !reloaded && !isNoScript(err) {
			reloadSlotsAfter(ctx, d.rdb, err)
			reloaded = true
		}
		if isNoScript(cmds[i].Err()) {
			dispatchScript.forget(hashes[i])
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

// args are the dispatch script's keys and arguments for x.
func (d *RedisDispatcher) args(x *Dispatch) ([]string, []any) {
	keys, args := d.h.appendArgs(x.M)
	x.M.Time = args[1].(int64)
	mode := dedupeNone
	if x.Key != "" {
		keys = append(keys, d.keys.dedupe(x.M.UserID, hashKey(x.Key)))
		mode = dedupeCheck
		if x.RecordOnly {
			mode = dedupeRecord
		}
	}
	return keys, append(args, mode, DedupeWindow.Milliseconds(), d.ttl, x.M.MessageID, x.M.CorrelationID)
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

// reply reads the script's answer into m's position.
func (d *RedisDispatcher) reply(cmd *redis.Cmd, m *Message) (dispatchReply, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return dispatchReply{}, fmt.Errorf("dispatch: %w", err)
	}
	if len(vals) < 4 {
		return dispatchReply{}, fmt.Errorf("dispatch: unexpected reply %v", vals)
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
