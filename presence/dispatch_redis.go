package presence

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var _ Dispatcher = (*RedisDispatcher)(nil)

// RedisDispatcher dispatches with one Lua script: number and record the message,
// find the live instances holding the user, and PUBLISH to each (or to the broadcast
// channel). Redis runs scripts one at a time and hands each subscriber what was
// published in that order, so every instance receives messages in id order, whoever
// consumed them; and a message is published only once it is in the history.
type RedisDispatcher struct {
	rdb  redis.UniversalClient
	keys redisKeys
	h    *RedisHistory
}

// NewRedisDispatcher records in the history of opts and publishes on its relay
// channels, for the directory under the same prefix.
func NewRedisDispatcher(rdb redis.UniversalClient, opts RedisOptions) *RedisDispatcher {
	opts = opts.withDefaults()
	return &RedisDispatcher{rdb: rdb, keys: redisKeys(opts.Prefix), h: NewRedisHistory(rdb, opts)}
}

// dispatchScript: KEYS: seq, stream, clock, instances set, [dedupe key].
// ARGV: size, ttl ms, clock step ms, routing key, body, user (empty for a broadcast),
// payload tail (relayTail), conns key prefix, instance key prefix, instance channel
// prefix, broadcast channel, dedupe window ms, AMQP message-id, correlation-id.
// Returns number, previous number in the stream, 1 if it was a duplicate, and how many
// instances it was published to (0 for a broadcast or a duplicate).
var dispatchScript = redis.NewScript(historyLua + `
if #KEYS == 5 then
  local old = redis.call('GET', KEYS[5])
  if old then return {tonumber(old), '', 1, 0} end
end
local seq, prev = appendEntry(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[13], ARGV[14])
if #KEYS == 5 then redis.call('SET', KEYS[5], seq, 'PX', ARGV[12]) end
local p = prev
if p == '' then p = '0' end
local payload = '\1' .. string.format('%d', seq) .. ' ' .. p .. ARGV[7] .. ARGV[5]
local user = ARGV[6]
local sent = 0
if user == '' then
  redis.call('PUBLISH', ARGV[11], payload)
else
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    if redis.call('HEXISTS', ARGV[8] .. id, user) == 1 and redis.call('EXISTS', ARGV[9] .. id) == 1 then
      redis.call('PUBLISH', ARGV[10] .. id, payload)
      sent = sent + 1
    end
  end
end
return {seq, prev, 0, sent}
`)

func (d *RedisDispatcher) Dispatch(ctx context.Context, m *Message, key string) (bool, error) {
	dup, _, err := d.reply(d.run(ctx, d.rdb, dispatchScript.Run, m, key), m)
	return dup, err
}

// DispatchBatch sends the script calls of b in one pipeline. Redis runs them in
// order, one at a time, so b is numbered and published as one Dispatch after the
// other would; other clients' commands may run in between. The first call carries
// the script itself (EVAL), so a Redis that lost its script cache (a restart) has it
// again before the others name it by hash (EVALSHA): loading it after a NOSCRIPT and
// retrying would number those calls after the ones that followed them. Each call
// succeeds or fails on its own; a connection that breaks fails the ones whose reply
// did not come.
func (d *RedisDispatcher) DispatchBatch(ctx context.Context, b []Dispatch) {
	if len(b) == 0 {
		return
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(b))
	for i := range b {
		call := dispatchScript.EvalSha
		if i == 0 {
			call = dispatchScript.Eval
		}
		cmds[i] = d.run(ctx, pipe, call, b[i].M, b[i].Key)
	}
	_, _ = pipe.Exec(ctx) // each command holds its own error
	for i := range b {
		b[i].Dup, b[i].Instances, b[i].Err = d.reply(cmds[i], b[i].M)
	}
}

// scriptCall is one way of calling a script: Run, Eval or EvalSha.
type scriptCall func(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd

// run calls the dispatch script for m on c (the client, or a pipeline).
func (d *RedisDispatcher) run(ctx context.Context, c redis.Scripter, call scriptCall, m *Message, key string) *redis.Cmd {
	keys := []string{d.keys.seq(), d.h.stream(m.UserID), d.keys.clock(), d.keys.instances()}
	if key != "" {
		keys = append(keys, d.keys.dedupe(key))
	}
	// The sender is left empty: a dispatched broadcast goes to every instance,
	// the dispatching one included.
	return call(ctx, c, keys,
		d.h.size, d.h.ttl.Milliseconds(), d.h.step.Milliseconds(), m.RoutingKey, m.Body,
		m.UserID, relayTail("", m), d.keys.conns(""), d.keys.instance(""),
		d.keys.relayInstance(""), d.keys.relayBroadcast(), DedupeWindow.Milliseconds(),
		m.MessageID, m.CorrelationID,
	)
}

// reply reads the script's answer into m.ID and m.Prev and says whether m was a
// duplicate and to how many instances it went.
func (d *RedisDispatcher) reply(cmd *redis.Cmd, m *Message) (bool, int, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return false, 0, fmt.Errorf("dispatch: %w", err)
	}
	if len(vals) != 4 {
		return false, 0, fmt.Errorf("dispatch: unexpected reply %v", vals)
	}
	seq, ok1 := vals[0].(int64)
	prev, ok2 := vals[1].(string)
	dup, ok3 := vals[2].(int64)
	sent, ok4 := vals[3].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return false, 0, fmt.Errorf("dispatch: unexpected reply %v", vals)
	}
	m.ID, m.Prev = FormatCursor(uint64(seq)), prev
	return dup == 1, int(sent), nil
}
