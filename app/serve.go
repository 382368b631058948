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
		log.Warn("DEV MODE: clients are NOT authenticated (user id from the path or ?user=) and any Origin is accepted unless BRIDGE_ALLOWED_ORIGINS is set; listening on loopback only unless BRIDGE_LISTEN says otherwise; never run this in production")
	}
	if cfg.PprofAddr != "" {
		pprofCtx, stopPprof := context.WithCancel(ctx)
		defer stopPprof()
		if _, err := startPprof(pprofCtx, cfg.PprofAddr, log); err != nil {
			return err
		}
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
	b := newBroker(cfg, log)
	events, trans, ob := newEvents(ctx, cfg, be, b, log)
	defer ob.stop()
	lag := newRelayLag()
	hub := presence.NewHub(presence.HubConfig{
		Instance: cfg.InstanceID, History: be.history, Directory: be.dir, Log: log,
		Events: events, Receipts: be.receipts, ReceiptTTL: cfg.HistoryTTL, Transitions: trans,
		Relayed: lag.observe,
	})
	lc, err := startShared(ctx, cfg, be, hub, ob.transitionsBeat(), log)
	if err != nil {
		return err
	}
	defer lc.stop()
	consumer := NewConsumer(ConsumerConfig{Dispatcher: be.disp, MaxBytes: cfg.MaxMessageBytes, Events: events, Log: log, Wrote: lc.noteWrite})

	if err := b.Start(ctx, consumer.Handle); err != nil {
		return err
	}
	defer b.Close()

	var draining atomic.Bool
	ready := readiness(ctx, &draining, b, be, lc)
	gate := newConnGate(connCap(cfg.MaxConns, log))
	srv := handlers.NewServer(handlers.Deps{
		Instance: cfg.InstanceID, Hub: hub, Directory: be.dir, Instances: be.instances, Dispatcher: be.disp, Publisher: brokerPublisher{b},
		Idempotency: be.idem,
		Inbound:     cfg.Inbound, InboundKeys: cfg.InboundKeys, ConsumedKeys: bindingKeys(cfg.Bindings), Auth: auth, Ready: ready, Draining: draining.Load, Log: log,
		Limits:     limitsOf(cfg),
		Metrics:    newMetrics(hub, consumer, b, be, gate, cfg.Dev, append(ob.collectors(), lag.h)...),
		MetricsKey: cfg.MetricsKey,
		Hijacking:  gate.hijacking,
	})

	httpSrv, serveErr, err := startHTTP(ctx, cfg, gate, srv, stdout, log)
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
	drain(ctx, cfg, b, httpSrv, hub, lc, ob, log)
	return nil
}

// drain stops taking work, finishes what was taken, and sends every client elsewhere,
// within cfg.ShutdownTimeout.
func drain(ctx context.Context, cfg *Config, b broker.Broker, httpSrv *http.Server, hub *presence.Hub, lc *shared, ob *eventsRun, log *slog.Logger) {
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
	ob.flush(shutCtx) // after the hub drained: its last events are in
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
}

// newBroker is RabbitMQ at cfg.AMQPURL, or the in-process queue without one.
func newBroker(cfg *Config, log *slog.Logger) broker.Broker {
	if cfg.AMQPURL == "" {
		log.Info("no AMQP_URL: using the in-process queue")
		return broker.NewMemory(cfg.Bindings, cfg.DeliveryLimit, log)
	}
	return broker.NewRabbit(broker.RabbitConfig{
		URL: cfg.AMQPURL, Exchange: cfg.Exchange, Bindings: cfg.Bindings, Prefetch: cfg.Prefetch,
		Lanes: cfg.QueueLanes, OrderKey: orderKey(cfg.MaxMessageBytes),
		DeadLetterExchange: cfg.DeadLetterExchange, SingleActive: cfg.SingleActive,
		QueueType: cfg.QueueType, DeliveryLimit: cfg.DeliveryLimit, EventsExchange: cfg.EventsExchange, Logger: log,
	})
}

// readiness is /readyz: not draining, the broker connected, Redis (when used)
// answering, taking writes (the last heartbeat succeeded) and the relay subscribed.
func readiness(ctx context.Context, draining *atomic.Bool, b broker.Broker, be *backend, lc *shared) func() error {
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
		return lc.notReady()
	}
}

// startHTTP listens on cfg's address (port 0: any free port) and serves h; the
// listening port is logged and printed on stdout, where tests and scripts read it.
// serveErr receives why the server stopped serving, unless it was shut down.
//
// Every connection is bounded in time until it is a live stream: its headers within
// BRIDGE_HANDSHAKE_TIMEOUT (ReadHeaderTimeout, also once a keep-alive connection sends
// the next request's first byte), a request's body within BRIDGE_BODY_TIMEOUT
// (guardBodies), idle keep-alive within idleTimeout; and it counts against
// BRIDGE_MAX_CONNS from accept (connGate).
func startHTTP(ctx context.Context, cfg *Config, gate *connGate, h http.Handler, stdout io.Writer, log *slog.Logger) (*http.Server, <-chan error, error) {
	ln, err := listen(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	httpSrv := &http.Server{
		Handler: gate.guardBodies(h, cfg.BodyTimeout), ReadHeaderTimeout: cfg.HandshakeTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes, IdleTimeout: idleTimeout,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState: gate.track, ConnContext: gate.connContext,
	}
	httpSrv.RegisterOnShutdown(gate.closeFresh)
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(gate.listener(ln)) }()
	port := ln.Addr().(*net.TCPAddr).Port
	log.Info("listening", "addr", ln.Addr().String(), "broker", brokerName(cfg), "shared", sharedName(cfg), "inbound", cfg.Inbound, "max_conns", gate.max)
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
