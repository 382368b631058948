package presence

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisCLIDocs runs the redis-cli commands of docs/redis.md (the lines that start
// with "$ ") against data set up here, and checks that each shows what the document
// says it shows.
func TestRedisCLIDocs(t *testing.T) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed (apt-get install redis-tools): %v", err)
	}
	doc, err := os.ReadFile("../docs/redis.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for line := range strings.Lines(string(doc)) {
		// Every redis-cli command the document shows; other shell lines (pushbridge
		// inspect) are checked by the app's own tests.
		if c, ok := strings.CutPrefix(line, "$ "); ok && strings.Contains(c, "redis-cli") {
			cmds = append(cmds, strings.TrimSpace(c))
		}
	}
	ctx := testCtx(t)
	rdb, opts := newTestRedis(t)
	opts.PresenceTTL = time.Minute
	fx := newCLIFixture(t, ctx, opts, rdb)
	expand := strings.NewReplacer("redis-cli", "redis-cli -u "+testRedisURL(), "bridge:", opts.Prefix).Replace

	checks := cliChecks(opts, fx)
	if len(cmds) != len(checks)+1 {
		t.Fatalf("docs/redis.md has %d commands, this test checks %d: update both together", len(cmds), len(checks)+1)
	}
	for i, check := range checks {
		c := expand(cmds[i])
		out, err := exec.CommandContext(ctx, "bash", "-c", c).Output()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		t.Logf("$ %s\n%s", c, out)
		check(t, string(out))
	}
	watchBroadcasts(t, ctx, expand(cmds[len(cmds)-1]), fx)
}

// cliChecks are, in the document's order, what each command must show.
func cliChecks(opts RedisOptions, fx *cliFixture) []func(t *testing.T, out string) {
	return []func(t *testing.T, out string){
		func(t *testing.T, out string) { // live instances
			f := strings.Split(strings.TrimSpace(out), "\n")
			var got []string
			for i := 0; i+1 < len(f); i += 2 {
				got = append(got, strings.TrimSpace(f[i]))
			}
			slices.Sort(got)
			if want := []string{"pb-1a2b3c4d", "pb-5e6f7a8b"}; !slices.Equal(got, want) {
				t.Errorf("live instances: got %q, want %q (the one that left must not show)", got, want)
			}
			if !strings.Contains(out, `"started":"`+fx.started+`"`) || !strings.Contains(out, `"conns":7`) || !strings.Contains(out, `"users":2`) {
				t.Errorf("instances: got %q, want started %s, conns 7 and users 2", out, fx.started)
			}
		},
		func(t *testing.T, out string) { // a user's presence
			got := map[string]string{}
			for line := range strings.Lines(strings.TrimSpace(out)) {
				f, v, _ := strings.Cut(strings.TrimSpace(line), "\t")
				inst, ok := strings.CutPrefix(f, "i:")
				if !ok {
					t.Fatalf("presence line %q: not an instance field", line)
				}
				_, js, ok := splitLease(v)
				var cs []connJSON
				if err := json.Unmarshal([]byte(js), &cs); !ok || err != nil {
					t.Fatalf("presence line %q: %v", line, err)
				}
				for _, c := range cs {
					got[inst] += c.Transport + " "
				}
			}
			want := map[string]string{"pb-1a2b3c4d": "ws ", "pb-5e6f7a8b": "sse poll "}
			if len(got) != len(want) || got["pb-1a2b3c4d"] != want["pb-1a2b3c4d"] || got["pb-5e6f7a8b"] != want["pb-5e6f7a8b"] {
				t.Errorf("user 42's connections: got %q, want %q (from %q)", got, want, out)
			}
		},
		func(t *testing.T, out string) { // a user's messages
			wantInOrder(t, out, "2-0", "second for 42", "1-0", "r", "contract", "first for 42")
			if strings.Contains(out, "for 7") || strings.Contains(out, "news") {
				t.Errorf("user 42's history shows other messages: %q", out)
			}
		},
		func(t *testing.T, out string) { // broadcasts
			wantInOrder(t, out, "1-0", "news for all")
			if strings.Contains(out, "for 42") {
				t.Errorf("broadcast history shows a user's message: %q", out)
			}
		},
		func(t *testing.T, out string) { // epoch and top
			if f := strings.Fields(out); len(f) != 2 || f[0] != fx.user[1].Epoch || f[1] != "2" {
				t.Errorf("epoch and top: got %q, want %s 2", out, fx.user[1].Epoch)
			}
		},
	}
}

// cliFixture is what TestRedisCLIDocs set up for the commands to show.
type cliFixture struct {
	started string
	user    []*Message // user 42's, oldest first
	bcast   *Message
	relay   *RedisRelay
}

// newCLIFixture sets up two live instances and one that left, user 42 connected to
// both live ones (and to the one that left), and some history.
func newCLIFixture(t *testing.T, ctx context.Context, opts RedisOptions, rdb redis.UniversalClient) *cliFixture {
	t.Helper()
	fx := &cliFixture{}
	reg := NewRedisInstances(rdb, opts)
	started := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	fx.started = started.Format(time.RFC3339Nano)
	conns := map[string]int{"pb-1a2b3c4d": 7, "pb-5e6f7a8b": 2, "pb-0dead000": 1}
	transports := map[string][]string{"pb-1a2b3c4d": {"ws"}, "pb-5e6f7a8b": {"sse", "poll"}, "pb-0dead000": {"ws"}}
	for _, id := range []string{"pb-1a2b3c4d", "pb-5e6f7a8b", "pb-0dead000"} {
		o := opts
		o.Instance = id
		d := NewRedisDirectory(rdb, o)
		var es []Entry
		for i, tr := range transports[id] {
			es = append(es, Entry{User: "42", Instance: id, Transport: tr, Since: started.Add(time.Duration(i) * time.Second)})
		}
		es = append(es, Entry{User: "7", Instance: id, Transport: "ws", Since: started})
		for _, e := range es {
			if err := d.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := reg.Beat(ctx, Instance{ID: id, Started: started, Conns: conns[id], Users: d.LocalUsers()}); err != nil {
			t.Fatal(err)
		}
		if id != "pb-0dead000" {
			continue
		}
		for _, e := range es { // a clean stop: its connections drained, then it leaves
			if err := d.Remove(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := reg.Leave(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	h := NewRedisHistory(rdb, opts)
	fx.user = []*Message{
		{UserID: "42", RoutingKey: "contract", Body: []byte(`{"receiveUserId":"42","text":"first for 42"}`)},
		{UserID: "42", RoutingKey: "contract", Body: []byte("second for 42")},
	}
	fx.bcast = &Message{RoutingKey: "news", Body: []byte("news for all")}
	for _, m := range []*Message{fx.user[0], {UserID: "7", RoutingKey: "contract", Body: []byte("only for 7")}, fx.bcast, fx.user[1]} {
		if err := h.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	o := opts
	o.Instance = "pb-1a2b3c4d"
	fx.relay = NewRedisRelay(rdb, o, nil)
	return fx
}

// wantInOrder checks that out holds each of want, in that order.
func wantInOrder(t *testing.T, out string, want ...string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("output lacks %q (in this order: %q): %q", w, want, out)
			return
		}
		rest = rest[i+len(w):]
	}
}

// watchBroadcasts runs the SUBSCRIBE command and checks that a broadcast sent by an
// instance shows in its output.
func watchBroadcasts(t *testing.T, ctx context.Context, c string, fx *cliFixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "exec "+c)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// redis-cli prints the channel name once it is subscribed.
	if !readUntil(ctx, lines, "{b}:relay") {
		t.Fatalf("%s: never subscribed", c)
	}
	if err := fx.relay.Broadcast(ctx, &Message{Epoch: fx.bcast.Epoch, Seq: 2, RoutingKey: "news", Body: []byte("live broadcast")}); err != nil {
		t.Fatal(err)
	}
	if !readUntil(ctx, lines, "live broadcast") {
		t.Errorf("%s: the broadcast never showed", c)
	}
}

func readUntil(ctx context.Context, lines <-chan string, want string) bool {
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return false
			}
			if strings.Contains(l, want) {
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
}
