// Package app is the Pushbridge process: configuration, wiring, lifecycle and the
// command-line subcommands.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pushbridge/pushbridge/app/bench"
)

// Run runs the pushbridge command with args (args[0] is the program name).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		cmd, rest = rest[0], rest[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, getenv, stdout, stderr)
	case "gentoken":
		err = gentoken(rest, getenv, stdout, stderr)
	case "publish":
		err = publish(ctx, rest, getenv, stdout, stderr)
	case "inspect":
		err = inspect(ctx, rest, getenv, stdout, stderr)
	case "bench":
		err = bench.Run(ctx, rest, getenv, stdout, stderr, Run)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

const usage = `Usage: pushbridge [command] [flags]

Commands:
  serve      run the gateway (the default)
  publish    publish one message through RabbitMQ or the HTTP API
  gentoken   print a client token signed with the configured secret
  inspect    the live instances, a user's connections and recent messages, read
             from Redis (REDIS_URL) and decoded
  bench      load generator: connections, publish rate, duration; prints
             deliveries/s, latency percentiles, loss and duplicates
  help       this text

Run "pushbridge COMMAND -h" for the flags of each. Every flag of serve mirrors an
environment variable (-port for PORT, -amqp-url for AMQP_URL, ...).
`
