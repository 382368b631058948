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

// dispatchScript: KEYS: meta, stream, instances set, [dedupe key].
// ARGV: candidate epoch, now ms, size, history TTL ms, meta TTL ms, routing key, body,
// user (empty for a broadcast), payload head (version and namespace line), payload
// tail (relayTail), conns key prefix, instance key prefix, instance channel prefix,
// broadcast channel, dedupe window ms.
// Returns epoch, seq, 1 if it was a duplicate.
var dispatchScript = redis.NewScript(historyLua + `
if #KEYS == 4 then
  local old = redis.call('GET', KEYS[4])
  if old then
    local e, s = string.match(old, '^(%w*)-(%d+)$')
    return {e, tonumber(s), 1}
  end
end
local e, s = appendEntry(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7])
if #KEYS == 4 then redis.call('SET', KEYS[4], e .. '-' .. fmt(s), 'PX', ARGV[15]) end
local payload = ARGV[9] .. e .. ' ' .. fmt(s) .. ' ' .. ARGV[2] .. ARGV[10] .. ARGV[7]
local user = ARGV[8]
if user == '' then
  redis.call('PUBLISH', ARGV[14], payload)
else
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('HEXISTS', ARGV[11] .. id, user) == 1 and redis.call('EXISTS', ARGV[12] .. id) == 1 then
      redis.call('PUBLISH', ARGV[13] .. id, payload)
    end
  end
end
return {e, s, 0}
`)

func (d *RedisDispatcher) Dispatch(ctx context.Context, m *Message, key string) (bool, error) {
	return d.reply(d.run(ctx, d.rdb, dispatchScript.Run, m, key), m)
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
		b[i].Dup, b[i].Err = d.reply(cmds[i], b[i].M)
	}
}

// scriptCall is one way of calling a script: Run, Eval or EvalSha.
type scriptCall func(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd

// run calls the dispatch script for m on c (the client, or a pipeline).
func (d *RedisDispatcher) run(ctx context.Context, c redis.Scripter, call scriptCall, m *Message, key string) *redis.Cmd {
	keys, args := d.h.appendArgs(m)
	m.Time = args[1].(int64)
	keys = append(keys, d.keys.instances())
	if key != "" {
		keys = append(keys, d.keys.dedupe(key))
	}
	head := append([]byte{relayVersion}, string(d.keys)...)
	head = append(head, '\n')
	// The sender is left empty: a dispatched broadcast goes to every instance,
	// the dispatching one included.
	return call(ctx, c, keys, append(args,
		m.UserID, head, relayTail("", m), d.keys.conns(""), d.keys.instance(""),
		d.keys.relayInstance(""), d.keys.relayBroadcast(), DedupeWindow.Milliseconds(),
	)...)
}

// reply reads the script's answer into m's position and says whether m was a
// duplicate.
func (d *RedisDispatcher) reply(cmd *redis.Cmd, m *Message) (bool, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return false, fmt.Errorf("dispatch: %w", err)
	}
	if len(vals) != 3 {
		return false, fmt.Errorf("dispatch: unexpected reply %v", vals)
	}
	if err := setPos(m, vals, m.Time); err != nil {
		return false, fmt.Errorf("dispatch: %w", err)
	}
	dup, _ := vals[2].(int64)
	return dup == 1, nil
}
