package app

import "github.com/pushbridge/pushbridge/handlers"

// limitsOf hands the configured per-connection limits to the routes.
func limitsOf(cfg *Config) handlers.Limits {
	return handlers.Limits{
		MaxMessageBytes:  cfg.MaxMessageBytes,
		SendQueue:        cfg.SendQueue,
		SendQueueBytes:   cfg.SendQueueBytes,
		Heartbeat:        cfg.Heartbeat,
		MessageRate:      cfg.MessageRate,
		MessageBurst:     cfg.MessageBurst,
		ByteRate:         cfg.ByteRate,
		UserRate:         cfg.UserRate,
		UserBurst:        cfg.UserBurst,
		MaxConns:         cfg.MaxConns,
		MaxConnsPerUser:  cfg.MaxConnsPerUser,
		MaxQueryBytes:    cfg.MaxQueryBytes,
		HandshakeTimeout: cfg.HandshakeTimeout,
		MaxAge:           cfg.MaxConnectionAge,
	}
}
