package presence

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// runScript is a script that knows the run id of the Redis process it runs on
// (docs/redis.md, "Failover"): its text starts with `local RUN = '<run_id>'`, and the
// copy for a process is loaded on that process only, with SCRIPT LOAD on the same
// connection as the INFO that read the run id. It is then only ever called by hash
// (EVALSHA). Redis 7 keeps scripts in memory only — not in the RDB or AOF, and not
// sent to replicas — so a restarted process, one restored from a dump, or a replica
// that took over answers NOSCRIPT for every copy it did not load itself: the caller
// loads the copy with that process's run id and calls again. The copy that runs
// therefore always names the run id of the process running it, whatever a cache
// here believes, and a meta written by another run is refenced (a new epoch) by the
// append.
type runScript struct {
	body string

	mu     sync.Mutex
	loaded map[string]string // node address ("" for one server) → hash of the copy loaded there
}

func newRunScript(body string) *runScript {
	return &runScript{body: body, loaded: map[string]string{}}
}

// source is the script's text for the process with run id run.
func (s *runScript) source(run string) string { return "local RUN = '" + run + "'\n" + s.body }

// node is the client of the process that serves key (a master on a cluster), and a
// name for it in the cache.
func runNode(ctx context.Context, rdb redis.UniversalClient, key string) (string, *redis.Client, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		return "", c, nil
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return "", nil, err
		}
		return n.Options().Addr, n, nil
	}
	return "", nil, fmt.Errorf("redis client %T: want one server or a cluster", rdb)
}

// hash is the hash of the copy to call for key: the one loaded on the process serving
// it, loaded now if there is none yet. failed (may be nil) holds the nodes whose load
// failed already in this round, so a batch for a Redis that does not answer waits
// for one load, not one per message.
func (s *runScript) hash(ctx context.Context, rdb redis.UniversalClient, key string, failed map[string]error) (string, error) {
	addr, node, err := runNode(ctx, rdb, key)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	h, ok := s.loaded[addr]
	s.mu.Unlock()
	if ok {
		return h, nil
	}
	if err := failed[addr]; err != nil {
		return "", err
	}
	h, err = s.load(ctx, addr, node)
	if err != nil && failed != nil {
		failed[addr] = err
	}
	return h, err
}

// load reads the run id of node's process and loads the copy naming it, both on one
// connection: a restart in between breaks the connection, so the copy cannot land on
// a process other than the one whose run id it names.
func (s *runScript) load(ctx context.Context, addr string, node *redis.Client) (string, error) {
	cn := node.Conn()
	defer cn.Close()
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("redis run id: %w", err)
	}
	run, err := parseRunID(info)
	if err != nil {
		return "", err
	}
	h, err := cn.ScriptLoad(ctx, s.source(run)).Result()
	if err != nil {
		return "", fmt.Errorf("load script: %w", err)
	}
	s.mu.Lock()
	s.loaded[addr] = h
	s.mu.Unlock()
	return h, nil
}

// forget drops the cached copy h of the process serving key (it answered NOSCRIPT:
// restarted, restored, failed over, or its scripts flushed), unless another caller
// replaced it already.
func (s *runScript) forget(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, x := range s.loaded {
		if x == h {
			delete(s.loaded, addr)
		}
	}
}

// runScriptTries bounds how often one call is made again after NOSCRIPT: once is
// enough unless the slot moves or the process restarts again meanwhile.
const runScriptTries = 3

// run calls the script for keys once, on rdb (one call, not a pipeline), loading the
// copy of the serving process as needed.
func (s *runScript) run(ctx context.Context, rdb redis.UniversalClient, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	for range runScriptTries {
		h, err := s.hash(ctx, rdb, keys[0], nil)
		if err != nil {
			cmd = redis.NewCmd(ctx)
			cmd.SetErr(err)
			return cmd
		}
		cmd = evalSha(ctx, h, keys, args)
		_ = rdb.Process(ctx, noRetryCmd{cmd})
		if !isNoScript(cmd.Err()) {
			return cmd
		}
		s.forget(h)
	}
	return cmd
}

// evalSha is an EVALSHA call go-redis never sends a second time by itself. A cluster
// client resends a command whose reply timed out or whose connection broke (up to
// MaxRedirects times, whatever MaxRetries says); for an append that ran already — a
// paused master runs what it had received once it continues — that numbers the
// message twice, which a dedupe key cannot catch in mode record. So the caller alone
// retries, and knows what it retries (the delivery is requeued and checked against its
// dedupe key). MOVED and ASK are still followed: nothing ran.
func evalSha(ctx context.Context, h string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", h, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	cmd := redis.NewCmd(ctx, append(a, args...)...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

// noRetryCmd marks a command go-redis must not resend (see evalSha).
type noRetryCmd struct{ *redis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

// isNoScript says whether err is Redis's NOSCRIPT: nothing ran.
func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// parseRunID reads run_id from INFO server.
func parseRunID(info string) (string, error) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && isHex40(v) {
			return v, nil
		}
	}
	return "", errors.New("redis run id: no run_id in INFO server")
}

func isHex40(v string) bool {
	b, err := hex.DecodeString(v)
	return err == nil && len(b) == sha1.Size
}
