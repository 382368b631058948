package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app"
	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

// TestInspect: pushbridge inspect reads the live instance, a user's connection and
// their recent messages (a broadcast among them) from Redis.
func TestInspect(t *testing.T) {
	rd := apptest.NewRedis(t)
	env := rd.Env
	env["BRIDGE_DEV"], env["BRIDGE_API_KEY"], env["BRIDGE_BINDINGS"] = "1", "k", "queue_contract=contract"
	s := apptest.Start(t, env)
	ws := apptest.DialWS(t, s.WSURL("/ws?user=insp1"), transport.SubprotocolV1, nil)
	var welcome struct{ Instance string }
	if err := json.Unmarshal(ws.Next(t, 5*time.Second).Data, &welcome); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ body, user string }{{`{"n":"for insp1"}`, "insp1"}, {`{"n":"to everyone"}`, ""}, {`{"n":"for another"}`, "other"}} {
		if err := s.PublishAPI("k", "contract", []byte(p.body), p.user); err != nil {
			t.Fatal(err)
		}
	}
	ws.Next(t, 5*time.Second)
	ws.Next(t, 5*time.Second) // both recorded and delivered

	var out, errOut strings.Builder
	getenv := func(k string) string { return env[k] }
	if err := app.Run(context.Background(), []string{"pushbridge", "inspect", "-user", "insp1", "-history", "5"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("inspect: %v\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"instances (1 live)", welcome.Instance, "user insp1: 1 connections", "ws", `{"n":"for insp1"}`, `(broadcast)`, `{"n":"to everyone"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "for another") {
		t.Errorf("inspect -user insp1 shows another user's message:\n%s", got)
	}
	if err := app.Run(context.Background(), []string{"pushbridge", "inspect"}, func(string) string { return "" }, &out, &errOut); err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("inspect without Redis: got %v, want an error naming REDIS_URL", err)
	}
}
