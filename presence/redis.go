package presence

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every Redis key and channel, so Pushbridge can share a Redis
// with other programs and a person can find its keys with one pattern.
const DefaultPrefix = "bridge:"

// Defaults of RedisOptions; they match the configuration defaults in app/config.go.
const (
	defaultPresenceTTL = 10 * time.Second
	defaultHistorySize = 1000
	defaultHistoryTTL  = time.Hour
)

// Redis client limits.
const (
	// redisDialTimeout keeps a start against an unreachable Redis short, so the
	// process fails (or retries) instead of hanging.
	redisDialTimeout = 3 * time.Second
	// redisIOTimeout bounds one command: Redis answers in microseconds, so a second
	// means it is gone, and the caller (a delivery, a heartbeat) should fail and retry.
	redisIOTimeout = time.Second
	// redisPingTimeout bounds the reachability check done when connecting.
	redisPingTimeout = 3 * time.Second
)

// RedisOptions configure the Redis-backed Instances, Directory, History and Relay.
// Zero values are the defaults named beside each field.
type RedisOptions struct {
	Prefix      string        // starts every key and channel ("bridge:")
	Instance    string        // this process's instance id (required by Directory and Relay)
	PresenceTTL time.Duration // how long a silent instance stays live (10s)
	HistorySize int           // messages kept per stream (1000)
	HistoryTTL  time.Duration // a stream with no new message for this long is deleted (1h)
}

func (o RedisOptions) withDefaults() RedisOptions {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.PresenceTTL <= 0 {
		o.PresenceTTL = defaultPresenceTTL
	}
	if o.HistorySize <= 0 {
		o.HistorySize = defaultHistorySize
	}
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = defaultHistoryTTL
	}
	return o
}

// NewRedisClient connects to url (redis://[user:password@]host:port/db, or rediss://
// for TLS; a Redis Cluster with redis+cluster://[user:password@]host:port[,host:port…]
// or rediss+cluster://) and checks that Redis answers, so a bad REDIS_URL stops the
// start with one clear error instead of failing every delivery later. Commands are
// not retried by the client (unless the URL sets max_retries).
func NewRedisClient(ctx context.Context, url string) (redis.UniversalClient, error) {
	if IsClusterURL(url) {
		return newClusterClient(ctx, url)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	clientLimits(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries)
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("REDIS_URL: redis at %s does not answer: %w", opt.Addr, err)
	}
	return rdb, nil
}

// clientLimits fills the limits a URL left unset, for one server and a cluster alike.
// go-redis would resend a command whose reply timed out; for the history's append
// script that numbers the message a second time, so retries are off: the caller
// retries (a delivery is requeued) and knows what it is retrying.
func clientLimits(dial, read, write *time.Duration, retries *int) {
	*dial = cmp.Or(*dial, redisDialTimeout)
	*read = cmp.Or(*read, redisIOTimeout)
	*write = cmp.Or(*write, redisIOTimeout)
	*retries = cmp.Or(*retries, -1)
}

// redisKeys names every key and channel under one prefix. docs/redis.md lists them.
type redisKeys string

// registry is the hash of live instances: one field per instance, its lease deadline
// and what it reported at its last beat. Hash-tagged on its own, away from the users.
func (k redisKeys) registry() string { return string(k) + "{r}:instances" }

// meta is a stream's epoch, top and TTL marks (docs/redis.md), and for a user the
// presence fields of the instances holding the user: the user's, or the broadcasts'
// for user "". Hash-tagged with the stream, so one script may use both on a cluster.
func (k redisKeys) meta(user string) string { return k.tag(user) + ":meta" }

// stream is a stream's messages: the user's, or the broadcasts' for user "".
func (k redisKeys) stream(user string) string { return k.tag(user) + ":stream" }

// tag is the hash-tagged start of every key of one stream: everything a message
// touches is in its stream's slot.
func (k redisKeys) tag(user string) string {
	if user == "" {
		return string(k) + "{b}"
	}
	return string(k) + "{u:" + user + "}"
}

// dedupe remembers the position given to a dispatched message, by a hash of its
// dedupe key (see DedupeKey), in the slot of the message's stream.
func (k redisKeys) dedupe(user, hash string) string { return k.tag(user) + ":dd:" + hash }

// relayNamespace starts every relay channel and payload of a deployment: its key
// prefix and database number. Pub/sub ignores databases, so two deployments on one
// Redis server (say staging on DB 8, production on DB 7) must not share a channel,
// and a payload of the other is refused by its namespace. A cluster has only DB 0.
func relayNamespace(rdb redis.UniversalClient, prefix string) string {
	db := 0
	if c, ok := rdb.(*redis.Client); ok {
		db = c.Options().DB
	}
	return prefix + "db" + strconv.Itoa(db) + ":"
}

// relayInstance is the pub/sub channel of one instance, in namespace ns.
func relayInstance(ns, id string) string { return ns + "{i:" + id + "}:relay" }

// relayBroadcast is the pub/sub channel every instance of namespace ns listens to.
func relayBroadcast(ns string) string { return ns + "{b}:relay" }

// presenceField is the field of an instance in a user's meta hash.
func presenceField(instance string) string { return "i:" + instance }
