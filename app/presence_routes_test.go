package app_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
	"github.com/pushbridge/pushbridge/handlers/transport"
)

type instancesAnswer struct {
	Instances []struct {
		ID      string    `json:"id"`
		Started time.Time `json:"started"`
		Conns   int       `json:"conns"`
	} `json:"instances"`
}

type userPresence struct {
	User        string `json:"user"`
	Connections []struct {
		Instance  string    `json:"instance"`
		Transport string    `json:"transport"`
		Since     time.Time `json:"since"`
	} `json:"connections"`
}

type presenceCounts struct {
	Instances []struct {
		ID    string `json:"id"`
		Users int    `json:"users"`
		Conns int    `json:"conns"`
	} `json:"instances"`
	Users, Conns int
}

// TestPresenceRoutes: the inspection routes show this instance, a user's connections
// (instance, transport, since) and the counts, in memory and with Redis; a closed
// connection leaves the user's presence.
func TestPresenceRoutes(t *testing.T) {
	const key = "inspect-key"
	modes := map[string]func(t *testing.T) map[string]string{
		"memory": func(*testing.T) map[string]string { return map[string]string{} },
		"redis":  func(t *testing.T) map[string]string { return apptest.NewRedis(t).Env },
	}
	for name, envOf := range modes {
		t.Run(name, func(t *testing.T) {
			env := envOf(t)
			env["BRIDGE_DEV"], env["BRIDGE_API_KEY"], env["BRIDGE_PRESENCE_TTL"] = "1", key, "1s"
			s := apptest.Start(t, env)
			ws := apptest.DialWS(t, s.WSURL("/ws?user=pr1"), transport.SubprotocolV1, nil)
			var welcome struct{ Instance string }
			if err := json.Unmarshal(ws.Next(t, 5*time.Second).Data, &welcome); err != nil {
				t.Fatal(err)
			}

			var up userPresence
			if err := apptest.GetJSON(s.URL+"/api/presence/pr1", key, &up); err != nil {
				t.Fatal(err)
			}
			if len(up.Connections) != 1 || up.Connections[0].Instance != welcome.Instance || up.Connections[0].Transport != "ws" || up.Connections[0].Since.IsZero() {
				t.Fatalf("presence of pr1: %+v, want one ws connection on %s", up, welcome.Instance)
			}
			// The connection count comes with the heartbeat (every TTL/3).
			apptest.Eventually(t, 5*time.Second, "instance listed with its connection", func() bool {
				var ia instancesAnswer
				if err := apptest.GetJSON(s.URL+"/api/instances", key, &ia); err != nil {
					t.Fatal(err)
				}
				return len(ia.Instances) == 1 && ia.Instances[0].ID == welcome.Instance && ia.Instances[0].Conns == 1
			})
			var pc presenceCounts
			if err := apptest.GetJSON(s.URL+"/api/presence", key, &pc); err != nil {
				t.Fatal(err)
			}
			if len(pc.Instances) != 1 || pc.Instances[0].Users != 1 || pc.Users != 1 {
				t.Fatalf("presence counts %+v, want one instance with one user", pc)
			}

			ws.Conn.Close()
			apptest.Eventually(t, 5*time.Second, "pr1 gone from presence", func() bool {
				var up userPresence
				if err := apptest.GetJSON(s.URL+"/api/presence/pr1", key, &up); err != nil {
					t.Fatal(err)
				}
				return len(up.Connections) == 0
			})
			if resp, err := apptest.Get(s.URL+"/api/presence/%01", key); err != nil || resp.Status != http.StatusBadRequest {
				t.Errorf("a user id with a control character: got %v %v, want 400", resp, err)
			}
		})
	}
}
