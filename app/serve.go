package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/handlers"
	"github.com/pushbridge/pushbridge/presence"
)

// HTTP server limits.
const (
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 2 * time.Minute
	// maxReconnectSpread is the widest window drained clients are spread over when
	// they come back, so the surviving instances are not hit all at once.
	maxReconnectSpread = 5 * time.Second
	// relayStartTimeout bounds the wait for the relay's first subscription at start:
	// an instance that cannot hear the others must not take deliveries.
	relayStartTimeout = 10 * time.Second
	// readyPingTimeout bounds the Redis check of /readyz, which platforms call often.
	readyPingTimeout = time.Second
)

// serve runs the gateway until ctx ends or SIGINT/SIGTERM, then drains.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("instance", cfg.InstanceID)
	if cfg.Dev {
		log.Warn("DEV MODE: clients are NOT authenticated (user id from the path or ?user=) and any Origin is accepted unless BRIDGE_ALLOWED_ORIGINS is set; never run this in production")
	}
	authCtx, stopAuth := context.WithCancel(ctx) // ends the JWKS refresh when serve returns, whyever
	defer stopAuth()
	auth, err := newAuth(authCtx, cfg, log)
	if err != nil {
		return err
	}

	be, err := newBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer be.close()
	hub := presence.NewHub(presence.HubConfig{Instance: cfg.InstanceID, History: be.history, Directory: be.dir, Log: log})
	consumer := NewConsumer(ConsumerConfig{Dispatcher: be.disp, MaxBytes: cfg.MaxMessageBytes, Log: log})
	lc, err := startShared(ctx, cfg, be, hub, log)
	if err != nil {
		return err
	}
	defer lc.stop()

	b := newBroker(cfg, log)
	if err := b.Start(ctx, consumer.Handle); err != nil {
		return err
	}
	defer b.Close()

	var draining atomic.Bool
	ready := readiness(ctx, &draining, b, be)
	srv := handlers.NewServer(handlers.Deps{
		Instance: cfg.InstanceID, Hub: hub, Directory: be.dir, Instances: be.instances, Dispatcher: be.disp, Publisher: brokerPublisher{b},
		Inbound: cfg.Inbound, ConsumedKeys: bindingKeys(cfg.Bindings), Auth: auth, Ready: ready, Draining: draining.Load, Log: log,
		Limits:  limitsOf(cfg),
		Metrics: newMetrics(hub, consumer, b),
	})

	httpSrv, serveErr, err := startHTTP(cfg, srv, stdout, log)
	if err != nil {
		return err
	}

	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-sigCtx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}

	draining.Store(true)
	drain(ctx, cfg, b, httpSrv, hub, lc, log)
	return nil
}

// drain stops taking work, finishes what was taken, and sends every client elsewhere,
// within cfg.ShutdownTimeout.
func drain(ctx context.Context, cfg *Config, b broker.Broker, httpSrv *http.Server, hub *presence.Hub, lc *shared, log *slog.Logger) {
	start := time.Now()
	log.Info("draining")
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	b.StopConsuming(shutCtx)
	lc.flush(shutCtx)
	// Stop accepting before telling clients to reconnect, so none comes back here.
	// Shutdown closes the listener at once, then waits for requests that the hub
	// drain below ends (streams) or that finish by themselves.
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Shutdown(shutCtx) }()
	hub.Drain(shutCtx, min(maxReconnectSpread, cfg.ShutdownTimeout/2))
	if err := <-httpDone; err != nil {
		log.Warn("http shutdown", "err", err)
		httpSrv.Close()
	}
	lc.leave(shutCtx)
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
}

// newBroker is RabbitMQ at cfg.AMQPURL, or the in-process queue without one.
func newBroker(cfg *Config, log *slog.Logger) broker.Broker {
	if cfg.AMQPURL == "" {
		log.Info("no AMQP_URL: using the in-process queue")
		return broker.NewMemory(cfg.Bindings)
	}
	return broker.NewRabbit(broker.RabbitConfig{
		URL: cfg.AMQPURL, Exchange: cfg.Exchange, Bindings: cfg.Bindings, Prefetch: cfg.Prefetch,
		DeadLetterExchange: cfg.DeadLetterExchange, SingleActive: cfg.SingleActive, Logger: log,
	})
}

// readiness is /readyz: not draining, the broker connected, Redis (when used) answering.
func readiness(ctx context.Context, draining *atomic.Bool, b broker.Broker, be *backend) func() error {
	return func() error {
		switch {
		case draining.Load():
			return errors.New("draining")
		case !b.Ready():
			return errors.New("message broker unreachable")
		}
		if be.ping != nil {
			pctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
			defer cancel()
			if err := be.ping(pctx); err != nil {
				return errors.New("redis unreachable")
			}
		}
		return nil
	}
}

// startHTTP listens on cfg.Port (0: any free port) and serves h; the listening port is
// logged and printed on stdout, where tests and scripts read it. serveErr receives
// why the server stopped serving, unless it was shut down.
func startHTTP(cfg *Config, h http.Handler, stdout io.Writer, log *slog.Logger) (*http.Server, <-chan error, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port))
	if err != nil {
		return nil, nil, fmt.Errorf("PORT: %w", err)
	}
	fresh := newFreshConns()
	httpSrv := &http.Server{
		// ReadHeaderTimeout stops a client that opens a connection and trickles headers.
		Handler: h, ReadHeaderTimeout: cfg.HandshakeTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug), ConnState: fresh.track,
	}
	httpSrv.RegisterOnShutdown(fresh.closeAll)
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	port := ln.Addr().(*net.TCPAddr).Port
	log.Info("listening", "port", port, "broker", brokerName(cfg), "shared", sharedName(cfg), "inbound", cfg.Inbound)
	fmt.Fprintf(stdout, "pushbridge listening on :%d\n", port)
	return httpSrv, serveErr, nil
}

func bindingKeys(bs []broker.Binding) []string {
	keys := make([]string, len(bs))
	for i, b := range bs {
		keys[i] = b.Key
	}
	return keys
}

func sharedName(cfg *Config) string {
	if cfg.RedisURL == "" {
		return "in-memory"
	}
	return "redis"
}

func brokerName(cfg *Config) string {
	if cfg.AMQPURL == "" {
		return "in-process"
	}
	return "rabbitmq"
}
