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
	ListenHost         string // BRIDGE_LISTEN's host; see listenAddr
	ListenPort         string // BRIDGE_LISTEN's port; "": none given, PORT's
	ListenSet          bool   // BRIDGE_LISTEN is set
	AMQPURL            string // empty: in-process queue
	RedisURL           string // empty: in-memory, single instance
	RedisPrefix        string // starts every Redis key and channel
	Exchange           string
	Bindings           []broker.Binding
	Prefetch           int
	QueueLanes         int // batches of one queue in flight at once
	JWTSecret          string
	JWTPublicKeyFile   string
	JWTJWKSURL         string // https, or http on loopback
	JWTAudience        string // empty: aud not checked
	JWTIssuer          string // empty: iss not checked
	APIKey             string
	MetricsKey         string   // empty: /metrics is open
	AllowedOrigins     []string // empty: same origin only (any origin in dev mode)
	Dev                bool
	HistorySize        int
	HistoryTTL         time.Duration
	PresenceTTL        time.Duration
	InstanceID         string
	Heartbeat          time.Duration
	SendQueue          int
	SendQueueBytes     int
	MaxMessageBytes    int
	MaxHeaderBytes     int
	MaxQueryBytes      int
	HandshakeTimeout   time.Duration
	BodyTimeout        time.Duration
	MessageRate        int // client messages per second, per connection
	MessageBurst       int
	ByteRate           int // client payload bytes per second, per WebSocket
	UserRate           int // costly requests per second, per user on this instance
	UserBurst          int
	MaxConnsPerUser    int // on this instance
	MaxConns           int // on this instance
	MaxConnectionAge   time.Duration
	Inbound            string   // broker | broadcast | off
	InboundKeys        []string // routing keys clients may send with; "*": any but ours (see inboundKeysDefault)
	DeadLetterExchange string
	SingleActive       bool   // declare queues with x-single-active-consumer
	QueueType          string // classic | quorum
	DeliveryLimit      int    // failed hand-offs a message is tried again after
	ShutdownTimeout    time.Duration
	EventsExchange     string        // empty: no events (with AMQP_URL; memory mode logs them)
	OfflineGrace       time.Duration // a user back within this is not announced offline
	PprofAddr          string        // empty: no profiling listener
	PprofAllowRemote   bool          // a non-loopback PprofAddr is refused unless this is set
}

// setting is one configuration value: its variable, its flag and how to read it.
type setting struct {
	env, flag, def, usage string
	set                   func(c *Config, v string) error
}

var settings = []setting{
	{"PORT", "port", "8080", "HTTP port (0: any free port, reported at start)", intTo(func(c *Config) *int { return &c.Port }, 0, 65535)},
	{"BRIDGE_LISTEN", "listen", "", "address to listen on: host, or host:port whose port wins over PORT (unset: every interface; loopback only in -dev)", parseListen},
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
	{"BRIDGE_PREFETCH", "prefetch", "256", "unacknowledged deliveries per queue", intTo(func(c *Config) *int { return &c.Prefetch }, 1, 65535)},
	{"BRIDGE_QUEUE_LANES", "queue-lanes", "1", "batches of one queue handed off at once; a user's messages (and all broadcasts) stay in one lane, in queue order (1: one batch at a time)", intTo(func(c *Config) *int { return &c.QueueLanes }, 1, 64)},
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
	{"BRIDGE_METRICS_KEY", "metrics-key", "", "bearer key of /metrics (unset: /metrics is open)", func(c *Config, v string) error { c.MetricsKey = v; return nil }},
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
	{"BRIDGE_HEARTBEAT", "heartbeat", "25s", "WebSocket ping and SSE heartbeat period, and the longest a poll waits: a frozen client is gone within 1.5 of it (an SSE one with ?pong=1)", durTo(func(c *Config) *time.Duration { return &c.Heartbeat }, 100*time.Millisecond)},
	{"BRIDGE_SEND_QUEUE", "send-queue", "256", "messages queued per connection before it counts as slow and is closed", intTo(func(c *Config) *int { return &c.SendQueue }, 1, 1_000_000)},
	{"BRIDGE_SEND_QUEUE_BYTES", "send-queue-bytes", "4194304", "bytes queued per connection before it counts as slow and is closed; a replay or catch-up from the history fills at most half", intTo(func(c *Config) *int { return &c.SendQueueBytes }, 64<<10, 1<<30)},
	{"BRIDGE_MAX_MESSAGE_BYTES", "max-message-bytes", "65536", "largest message a client may send, and largest body delivered", intTo(func(c *Config) *int { return &c.MaxMessageBytes }, 64, 64<<20)},
	{"BRIDGE_MAX_HEADER_BYTES", "max-header-bytes", "32768", "largest request line plus headers (answered 431)", intTo(func(c *Config) *int { return &c.MaxHeaderBytes }, 4096, 1<<20)},
	{"BRIDGE_MAX_QUERY_BYTES", "max-query-bytes", "8192", "largest query string (answered 414)", intTo(func(c *Config) *int { return &c.MaxQueryBytes }, 256, 1<<20)},
	{"BRIDGE_HANDSHAKE_TIMEOUT", "handshake-timeout", "10s", "time a client has to send its request headers and finish a WebSocket handshake", durTo(func(c *Config) *time.Duration { return &c.HandshakeTimeout }, 100*time.Millisecond)},
	{"BRIDGE_BODY_TIMEOUT", "body-timeout", "10s", "time a client has to send a request's body once its headers arrived (408, or the connection closed)", durTo(func(c *Config) *time.Duration { return &c.BodyTimeout }, 100*time.Millisecond)},
	{"BRIDGE_MESSAGE_RATE", "message-rate", "20", "messages per second a client may send on one connection: on a WebSocket every frame counts, fragments, pings and pongs too (close 1008 / HTTP 429 beyond)", intTo(func(c *Config) *int { return &c.MessageRate }, 1, 1_000_000)},
	{"BRIDGE_MESSAGE_BURST", "message-burst", "50", "messages (WebSocket: frames) a client may send at once before BRIDGE_MESSAGE_RATE applies", intTo(func(c *Config) *int { return &c.MessageBurst }, 1, 1_000_000)},
	{"BRIDGE_USER_RATE", "user-rate", "10", "costly requests per second one user may make on this instance: polls with a cursor, connections resuming from a cursor, sends (HTTP 429 beyond)", intTo(func(c *Config) *int { return &c.UserRate }, 1, 1_000_000)},
	{"BRIDGE_USER_BURST", "user-burst", "40", "costly requests a user may make at once before BRIDGE_USER_RATE applies", intTo(func(c *Config) *int { return &c.UserBurst }, 1, 1_000_000)},
	{"BRIDGE_BYTE_RATE", "byte-rate", "262144", "payload bytes per second a client may send on one WebSocket, every frame's (close 1008 beyond; burst twice BRIDGE_MAX_MESSAGE_BYTES)", intTo(func(c *Config) *int { return &c.ByteRate }, 1024, 1<<30)},
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
	{"BRIDGE_INBOUND_KEYS", "inbound-keys", "", "routing keys clients may send with, comma separated, * for any but those of BRIDGE_BINDINGS (unset: inbound with BRIDGE_INBOUND=broadcast, * with broker)", func(c *Config, v string) error {
		c.InboundKeys = nil
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k == "" {
				continue
			}
			if len(k) > 255 {
				return fmt.Errorf("%.20q… is longer than 255 bytes, AMQP's limit for a routing key", k)
			}
			c.InboundKeys = append(c.InboundKeys, k)
		}
		return nil
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
	{"BRIDGE_EVENTS_EXCHANGE", "events-exchange", "", "durable topic exchange Pushbridge declares and publishes events to: user.online, user.offline, message.undelivered, message.received (unset: none; without AMQP_URL events go to the log)", func(c *Config, v string) error {
		if len(v) > 255 {
			return errors.New("is longer than 255 bytes, AMQP's limit for an exchange name")
		}
		c.EventsExchange = v
		return nil
	}},
	{"BRIDGE_OFFLINE_GRACE", "offline-grace", "5s", "how long a user may be without a connection before user.offline (absorbs reloads and reconnects)", durTo(func(c *Config) *time.Duration { return &c.OfflineGrace }, 0)},
	{"BRIDGE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long a drain may take before the process exits anyway", durTo(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 0)},
	{"BRIDGE_PPROF", "pprof", "", "serve Go's profiles (net/http/pprof) on this host:port, apart from the gateway's port; loopback only unless BRIDGE_PPROF_ALLOW_REMOTE (unset: off)", func(c *Config, v string) error { c.PprofAddr = v; return nil }},
	{"BRIDGE_PPROF_ALLOW_REMOTE", "pprof-allow-remote", "false", "let BRIDGE_PPROF listen on a non-loopback address", func(c *Config, v string) (err error) {
		c.PprofAllowRemote, err = strconv.ParseBool(v)
		return err
	}},
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
	if c.PprofAddr != "" {
		if err := checkPprofAddr(c.PprofAddr, c.PprofAllowRemote); err != nil {
			return nil, fmt.Errorf("BRIDGE_PPROF: %w", err)
		}
	}
	if !c.Dev && c.JWTSecret == "" && c.JWTPublicKeyFile == "" && c.JWTJWKSURL == "" {
		return nil, errors.New("no client auth configured: set BRIDGE_JWT_SECRET, BRIDGE_JWT_PUBLIC_KEY_FILE or BRIDGE_JWT_JWKS_URL, or run with -dev (BRIDGE_DEV=1)")
	}
	if err := checkDev(c, getenv); err != nil {
		return nil, err
	}
	if err := settleInboundKeys(c); err != nil {
		return nil, err
	}
	portGiven := getenv("PORT") != "" || vals["PORT"] != nil && *vals["PORT"] != ""
	if c.ListenPort != "" && portGiven && c.ListenPort != strconv.Itoa(c.Port) {
		return nil, fmt.Errorf("BRIDGE_LISTEN: its port %s contradicts PORT %d: give the port in one of them", c.ListenPort, c.Port)
	}
	return c, nil
}

// listenAddr is where the server listens: BRIDGE_LISTEN's host (unset: every
// interface, or loopback only in dev mode, so a laptop's dev server is not open to its
// network by accident) and BRIDGE_LISTEN's port, else PORT.
func (c *Config) listenAddr() string {
	host := c.ListenHost
	if !c.ListenSet && c.Dev {
		host = "127.0.0.1"
	}
	port := c.ListenPort
	if port == "" {
		port = strconv.Itoa(c.Port)
	}
	return net.JoinHostPort(host, port)
}

// parseListen reads BRIDGE_LISTEN: a host (name or IP, IPv6 with or without brackets)
// or host:port; ":8080" is every interface on 8080.
func parseListen(c *Config, v string) error {
	c.ListenHost, c.ListenPort, c.ListenSet = "", "", v != ""
	if v == "" {
		return nil
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); ip != nil {
		c.ListenHost = ip.String()
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		if strings.ContainsAny(v, ":[] /") {
			return fmt.Errorf("%q is not a host or host:port like 0.0.0.0:8080", v)
		}
		c.ListenHost = v // a host name
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not 0..65535", port)
	}
	c.ListenHost, c.ListenPort = host, strconv.Itoa(n)
	return nil
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
