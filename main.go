// Command pushbridge carries RabbitMQ messages to browsers over WebSocket, SSE and long-poll.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pushbridge/pushbridge/app"
)

func main() {
	if err := app.Run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pushbridge:", err)
		os.Exit(1)
	}
}
