package app

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/pushbridge/pushbridge/presence"
)

// inspectBodyMax is how much of a message body inspect prints: enough to recognise it.
const inspectBodyMax = 120

// inspect prints what the instances share in Redis, decoded for a person: the live
// instances, and with -user a user's connections and -history their recent messages.
func inspect(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pushbridge inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("redis-url", getenv("REDIS_URL"), "Redis the instances share; env REDIS_URL")
	prefix := fs.String("redis-prefix", cmp.Or(getenv("BRIDGE_REDIS_PREFIX"), presence.DefaultPrefix), "key prefix; env BRIDGE_REDIS_PREFIX")
	user := fs.String("user", "", "also show this user's connections")
	hist := fs.Int("history", 0, "also show the user's N most recent messages (broadcasts included; without -user, broadcasts only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("inspect: unexpected argument %q", fs.Arg(0))
	case *url == "":
		return errors.New("inspect: set REDIS_URL or -redis-url (without Redis, ask a server: GET /api/instances)")
	case *hist < 0:
		return errors.New("inspect: -history must be 0 or more")
	}
	if *user != "" {
		if err := presence.CheckUserID(*user); err != nil {
			return fmt.Errorf("inspect: -user: %w", err)
		}
	}
	rdb, err := presence.NewRedisClient(ctx, *url)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer rdb.Close()
	ro := presence.RedisOptions{Prefix: *prefix}

	list, err := presence.NewRedisInstances(rdb, ro).List(ctx)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "instances (%d live):\n", len(list))
	for _, in := range list {
		fmt.Fprintf(tw, "  %s\tstarted %s\t%d connections\n", in.ID, in.Started.Local().Format(time.DateTime), in.Conns)
	}
	if *user != "" {
		es, err := presence.NewRedisDirectory(rdb, ro).Lookup(ctx, *user)
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		fmt.Fprintf(tw, "\nuser %s: %d connections\n", *user, len(es))
		for _, e := range es {
			fmt.Fprintf(tw, "  %s\t%s\tsince %s\n", e.Instance, e.Transport, e.Since.Local().Format(time.DateTime))
		}
	}
	if *hist > 0 {
		msgs, err := presence.NewRedisHistory(rdb, ro).Recent(ctx, *user, *hist)
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		fmt.Fprintf(tw, "\nrecent messages (%d, oldest first):\n", len(msgs))
		for _, m := range msgs {
			to := m.UserID
			if m.Broadcast() {
				to = "(broadcast)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.ID, to, m.RoutingKey, printable(m.Body))
		}
	}
	return tw.Flush()
}

// printable shows a body on one line: its text, shortened, or its size when binary.
func printable(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("<%d bytes, binary>", len(b))
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > inspectBodyMax {
		cut := inspectBodyMax
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
