package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// Config is everything the server reads at start. It is read only in this file, from
// flags first, then the environment, then the defaults below.
type Config struct {
	Port               int
	AMQPURL            string // empty: in-process queue
	RedisURL           string // empty: in-memory, single instance
	RedisPrefix        string // starts every Redis key and channel
	Exchange           string
	Bindings           []broker.Binding
	Prefetch           int
	JWTSecret          string
	JWTPublicKeyFile   string
	JWTJWKSURL         string // https, or http on loopback
	JWTAudience        string // empty: aud not checked
	JWTIssuer          string // empty: iss not checked
	APIKey             string
	AllowedOrigins     []string // empty: same origin only (any origin in dev mode)
	Dev                bool
	HistorySize        int
	HistoryTTL         time.Duration
	PresenceTTL        time.Duration
	InstanceID         string
	Heartbeat          time.Duration
	SendQueue          int
	MaxMessageBytes    int
	MaxHeaderBytes     int
	MaxQueryBytes      int
	HandshakeTimeout   time.Duration
	MessageRate        int // client messages per second, per connection
	MessageBurst       int
	MaxConnsPerUser    int // on this instance
	MaxConns           int // on this instance
	MaxConnectionAge   time.Duration
	Inbound            string // broker | broadcast | off
	DeadLetterExchange string
	SingleActive       bool   // declare queues with x-single-active-consumer
	QueueType          string // classic | quorum
	DeliveryLimit      int    // failed hand-offs a message is tried again after
	ShutdownTimeout    time.Duration
}

// setting is one configuration value: its variable, its flag and how to read it.
type setting struct {
	env, flag, def, usage string
	set                   func(c *Config, v string) error
}

var settings = []setting{
	{"PORT", "port", "8080", "HTTP port (0: any free port, reported at start)", intTo(func(c *Config) *int { return &c.Port }, 0, 65535)},
	{"AMQP_URL", "amqp-url", "", "RabbitMQ URL, amqp://user:pass@host:5672/vhost (unset: in-process queue)", func(c *Config, v string) error {
		if v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") {
				return errors.New("want amqp://user:pass@host:port/vhost")
			}
		}
		c.AMQPURL = v
		return nil
	}},
	{"REDIS_URL", "redis-url", "", "Redis URL, redis://host:6379/0, rediss:// for TLS, unix:///path/to/redis.sock, a Redis Cluster redis+cluster://host:port[,host:port…] or rediss+cluster:// (unset: in-memory, single instance)", func(c *Config, v string) error {
		switch {
		case v == "":
		case presence.IsClusterURL(v):
			if err := presence.CheckClusterURL(v); err != nil {
				return fmt.Errorf("want redis+cluster://[user:password@]host:port[,host:port…] or rediss+cluster://…: %w", err)
			}
		default:
			if u, err := url.Parse(v); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
				return errors.New("want redis://host:port/db, rediss://host:port/db, unix:///path/to/socket, or redis+cluster://host:port[,host:port…] (rediss+cluster:// for TLS)")
			}
		}
		c.RedisURL = v
		return nil
	}},
	{"BRIDGE_REDIS_PREFIX", "redis-prefix", "bridge:", "starts every Redis key and channel (several deployments can share one Redis)", func(c *Config, v string) error {
		if v == "" || strings.ContainsAny(v, " *?[]") {
			return errors.New("must be non-empty, without spaces or glob characters (*?[])")
		}
		c.RedisPrefix = v
		return nil
	}},
	{"BRIDGE_EXCHANGE", "exchange", "exchange_test", "direct exchange to consume from and publish to", func(c *Config, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		c.Exchange = v
		return nil
	}},
	{"BRIDGE_BINDINGS", "bindings", "queue_transaction=transaction,queue_contract=contract,queue_qualification=qualification", "queue=routingkey pairs, comma separated", func(c *Config, v string) (err error) {
		c.Bindings, err = broker.ParseBindings(v)
		return err
	}},
	{"BRIDGE_PREFETCH", "prefetch", "64", "unacknowledged deliveries per queue", intTo(func(c *Config) *int { return &c.Prefetch }, 1, 65535)},
	{"BRIDGE_JWT_SECRET", "jwt-secret", "", "HS256 secret for client tokens", func(c *Config, v string) error { c.JWTSecret = v; return nil }},
	{"BRIDGE_JWT_PUBLIC_KEY_FILE", "jwt-public-key-file", "", "PEM public key (RS256/ES256) for client tokens", func(c *Config, v string) error {
		if v != "" {
			if _, err := os.Stat(v); err != nil {
				return err
			}
		}
		c.JWTPublicKeyFile = v
		return nil
	}},
	{"BRIDGE_JWT_JWKS_URL", "jwt-jwks-url", "", "JWKS URL of your identity provider: client tokens are verified with the key their kid names (RS*/PS*/ES*/EdDSA)", func(c *Config, v string) error {
		if v != "" {
			if err := checkJWKSURL(v); err != nil {
				return err
			}
		}
		c.JWTJWKSURL = v
		return nil
	}},
	{"BRIDGE_JWT_AUDIENCE", "jwt-audience", "", "required aud of client tokens (unset: not checked)", func(c *Config, v string) error { c.JWTAudience = v; return nil }},
	{"BRIDGE_JWT_ISSUER", "jwt-issuer", "", "required iss of client tokens (unset: not checked)", func(c *Config, v string) error { c.JWTIssuer = v; return nil }},
	{"BRIDGE_API_KEY", "api-key", "", "bearer key for /api/publish and the inspection routes", func(c *Config, v string) error { c.APIKey = v; return nil }},
	{"BRIDGE_ALLOWED_ORIGINS", "allowed-origins", "", "origins allowed to connect, comma separated, * for any (unset: same origin; any in -dev)", func(c *Config, v string) error {
		c.AllowedOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, strings.TrimSuffix(o, "/"))
			}
		}
		return nil
	}},
	{"BRIDGE_DEV", "dev", "", "development mode: no tokens, user id from the path or ?user=", func(c *Config, v string) (err error) {
		if v == "" {
			c.Dev = false
			return nil
		}
		if c.Dev, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%q is not 1 or 0 (true or false)", v)
		}
		return nil
	}},
	{"BRIDGE_HISTORY_SIZE", "history-size", "1000", "messages kept per user (and for broadcasts) to resume from", intTo(func(c *Config) *int { return &c.HistorySize }, 1, 10_000_000)},
	{"BRIDGE_HISTORY_TTL", "history-ttl", "1h", "how long a message stays resumable", durTo(func(c *Config) *time.Duration { return &c.HistoryTTL }, time.Second)},
	{"BRIDGE_PRESENCE_TTL", "presence-ttl", "10s", "how long a crashed instance stays in presence", durTo(func(c *Config) *time.Duration { return &c.PresenceTTL }, time.Second)},
	{"BRIDGE_INSTANCE_ID", "instance-id", "", "this instance's name, given a per-start suffix (default from FLY_ALLOC_ID, K_REVISION+host, or random)", func(c *Config, v string) error { c.InstanceID = v; return nil }},
	{"BRIDGE_HEARTBEAT", "heartbeat", "25s", "WebSocket ping and SSE comment period", durTo(func(c *Config) *time.Duration { return &c.Heartbeat }, 100*time.Millisecond)},
	{"BRIDGE_SEND_QUEUE", "send-queue", "256", "messages queued per connection before it counts as slow and is closed", intTo(func(c *Config) *int { return &c.SendQueue }, 1, 1_000_000)},
	{"BRIDGE_MAX_MESSAGE_BYTES", "max-message-bytes", "65536", "largest message a client may send, and largest body delivered", intTo(func(c *Config) *int { return &c.MaxMessageBytes }, 64, 64<<20)},
	{"BRIDGE_MAX_HEADER_BYTES", "max-header-bytes", "32768", "largest request line plus headers (answered 431)", intTo(func(c *Config) *int { return &c.MaxHeaderBytes }, 4096, 1<<20)},
	{"BRIDGE_MAX_QUERY_BYTES", "max-query-bytes", "8192", "largest query string (answered 414)", intTo(func(c *Config) *int { return &c.MaxQueryBytes }, 256, 1<<20)},
	{"BRIDGE_HANDSHAKE_TIMEOUT", "handshake-timeout", "10s", "time a client has to send its request headers and finish a WebSocket handshake", durTo(func(c *Config) *time.Duration { return &c.HandshakeTimeout }, 100*time.Millisecond)},
	{"BRIDGE_MESSAGE_RATE", "message-rate", "20", "messages per second a client may send on one connection (WebSocket close 1008 / HTTP 429 beyond)", intTo(func(c *Config) *int { return &c.MessageRate }, 1, 1_000_000)},
	{"BRIDGE_MESSAGE_BURST", "message-burst", "50", "messages a client may send at once before BRIDGE_MESSAGE_RATE applies", intTo(func(c *Config) *int { return &c.MessageBurst }, 1, 1_000_000)},
	{"BRIDGE_MAX_CONNS_PER_USER", "max-conns-per-user", "32", "connections one user may hold on this instance (503 beyond)", intTo(func(c *Config) *int { return &c.MaxConnsPerUser }, 1, 1_000_000)},
	{"BRIDGE_MAX_CONNS", "max-conns", "50000", "connections this instance holds (503 beyond)", intTo(func(c *Config) *int { return &c.MaxConns }, 1, 10_000_000)},
	{"BRIDGE_MAX_CONNECTION_AGE", "max-connection-age", "55m", "WebSockets and SSE streams end themselves (with a reconnect hint) before this age", durTo(func(c *Config) *time.Duration { return &c.MaxConnectionAge }, time.Second)},
	{"BRIDGE_INBOUND", "inbound", "broker", "what a client sends: broker | broadcast | off", func(c *Config, v string) error {
		switch v {
		case "broker", "broadcast", "off":
			c.Inbound = v
			return nil
		}
		return errors.New("want broker, broadcast or off")
	}},
	{"BRIDGE_DEAD_LETTER_EXCHANGE", "dead-letter-exchange", "", "x-dead-letter-exchange of the queues we declare", func(c *Config, v string) error { c.DeadLetterExchange = v; return nil }},
	{"BRIDGE_SINGLE_ACTIVE_CONSUMER", "single-active-consumer", "false", "declare queues with x-single-active-consumer: one instance consumes each queue at a time, so each user's messages keep publish order across instances", func(c *Config, v string) (err error) {
		c.SingleActive, err = strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		return nil
	}},
	{"BRIDGE_QUEUE_TYPE", "queue-type", "classic", "type of the queues we declare: classic, or quorum (replicated; RabbitMQ counts each message's tries and dead-letters it past BRIDGE_DELIVERY_LIMIT)", func(c *Config, v string) error {
		switch v {
		case broker.QueueClassic, broker.QueueQuorum:
			c.QueueType = v
			return nil
		}
		return errors.New("want classic or quorum")
	}},
	{"BRIDGE_DELIVERY_LIMIT", "delivery-limit", "5", "times a message whose hand-off failed (Redis refused it) is tried again before it is dead-lettered as poison (x-delivery-limit of quorum queues)", intTo(func(c *Config) *int { return &c.DeliveryLimit }, 0, 1000)},
	{"BRIDGE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long a drain may take before the process exits anyway", durTo(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 0)},
}

// checkJWKSURL demands https: the keys decide who may come in, so a key set fetched in
// the clear could be swapped on the way. Plain http is allowed only on loopback, for
// tests and an identity provider on the same host.
func checkJWKSURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return errors.New("want an https:// URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || isLoopback(h) {
			return nil
		}
		return fmt.Errorf("%s is plain http: use https (http only on loopback)", u.Host)
	}
	return errors.New("want an https:// URL")
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func intTo(field func(*Config) *int, lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is outside %d..%d", n, lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func durTo(field func(*Config) *time.Duration, lo time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 10s or 5m", v)
		}
		if d < lo {
			return fmt.Errorf("%s is below the minimum %s", d, lo)
		}
		*field(c) = d
		return nil
	}
}

// flagSet declares a flag for every setting; values left unset stay "".
func flagSet(name string, out io.Writer) (*flag.FlagSet, map[string]*string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		if s.env == "BRIDGE_DEV" {
			continue
		}
		def := ""
		if s.def != "" {
			def = " (default " + s.def + ")"
		}
		vals[s.env] = fs.String(s.flag, "", s.usage+"; env "+s.env+def)
	}
	return fs, vals
}

// parseConfig reads the configuration of the serve command.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	fs, vals := flagSet("pushbridge serve", out)
	dev := fs.Bool("dev", false, "development mode: no tokens, user id from the path or ?user=, any origin; env BRIDGE_DEV")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { // -dev, when given, beats BRIDGE_DEV either way
		if f.Name == "dev" {
			v := strconv.FormatBool(*dev)
			vals["BRIDGE_DEV"] = &v
		}
	})
	c, err := resolve(vals, getenv)
	if err != nil {
		return nil, err
	}
	if c.InstanceID == "" {
		c.InstanceID = defaultInstanceID(getenv)
	} else {
		// A restarted process is a new instance even under the same name: its
		// predecessor's presence must expire, not be refreshed by the newcomer.
		c.InstanceID += "-" + startSuffix()
	}
	if !c.Dev && c.JWTSecret == "" && c.JWTPublicKeyFile == "" && c.JWTJWKSURL == "" {
		return nil, errors.New("no client auth configured: set BRIDGE_JWT_SECRET, BRIDGE_JWT_PUBLIC_KEY_FILE or BRIDGE_JWT_JWKS_URL, or run with -dev (BRIDGE_DEV=1)")
	}
	return c, nil
}

// resolve applies flag, then environment, then default to every setting.
func resolve(vals map[string]*string, getenv func(string) string) (*Config, error) {
	c := &Config{}
	for _, s := range settings {
		v, from := s.def, ""
		if e := getenv(s.env); e != "" {
			v, from = e, s.env
		}
		if p := vals[s.env]; p != nil && *p != "" {
			v, from = *p, "-"+s.flag
		}
		if err := s.set(c, v); err != nil {
			if from == "" {
				from = s.env
			}
			return nil, fmt.Errorf("%s: %v", from, err)
		}
	}
	return c, nil
}

// defaultInstanceID names this process: the platform's name for the machine when there
// is one, always with a per-start suffix so a restarted process is a new instance.
func defaultInstanceID(getenv func(string) string) string {
	suffix := startSuffix()
	if id := getenv("FLY_ALLOC_ID"); id != "" {
		return id + "-" + suffix
	}
	if rev := getenv("K_REVISION"); rev != "" {
		host, _ := os.Hostname()
		return rev + "-" + host + "-" + suffix
	}
	return "pb-" + suffix
}

// startSuffix tells one process start from another.
func startSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
