package app_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Sizes of the load test: many messages, many users, one routing key.
const (
	loadMessages = 10_000
	loadUsers    = 50
	// loadPublishers publish through the API concurrently in memory mode; each owns
	// whole users, so a user's messages still go out in order from one goroutine.
	loadPublishers = 5
)

type loadBody struct {
	ReceiveUserID string `json:"receiveUserId"`
	N             int    `json:"n"` // position in this user's sequence
}

func TestManyMessagesToManyUsersInOrder(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.env)
		clients := make([]*apptest.WSClient, loadUsers)
		for u := range clients {
			clients[u] = apptest.DialWS(t, s.WSURL(fmt.Sprintf("/ws/yxd/u%d", u)), "", nil)
		}
		apptest.Eventually(t, 10*time.Second, "all clients registered", func() bool { return connCount(t, s) == loadUsers })

		// Message i goes to user i%loadUsers; per user the n's count up from 0.
		bodies := make([][]byte, loadMessages)
		for i := range bodies {
			bodies[i], _ = json.Marshal(loadBody{ReceiveUserID: fmt.Sprintf("u%d", i%loadUsers), N: i / loadUsers})
		}
		if m.tp != nil {
			m.tp.PublishMany(t, "contract", bodies, nil)
		} else {
			publishPerUser(t, s, bodies)
		}

		per := loadMessages / loadUsers
		for u, c := range clients {
			for n := range per {
				f := c.Next(t, 30*time.Second)
				var got loadBody
				if err := json.Unmarshal(f.Data, &got); err != nil {
					t.Fatalf("user u%d: frame %q: %v", u, f.Data, err)
				}
				if want := (loadBody{fmt.Sprintf("u%d", u), n}); got != want {
					t.Fatalf("user u%d frame %d: got %+v, want %+v (lost, duplicated, misrouted or out of order)", u, n, got, want)
				}
			}
		}
		if got := counted(t, "pushbridge_deliveries_acked_total", loadMessages, s); got != loadMessages {
			t.Errorf("deliveries acked: got %v, want %d", got, loadMessages)
		}
		s.Stop(t)
		// Nothing more arrived: a duplicate would show up before the close frame.
		for u, c := range clients {
			for f := range c.Frames {
				t.Errorf("user u%d: extra frame %q after all %d", u, f.Data, per)
			}
		}
		m.assertAllAcked(t)
	})
}

// publishPerUser publishes bodies through the API from a few goroutines, each of which
// owns a set of users and publishes their messages in order.
func publishPerUser(t *testing.T, s *apptest.Server, bodies [][]byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, loadPublishers)
	for p := range loadPublishers {
		wg.Go(func() {
			for i := p; i < len(bodies); i += loadPublishers {
				// i%loadPublishers == p fixes i%loadUsers to users owned by p alone,
				// since loadUsers is a multiple of loadPublishers.
				if err := s.PublishAPI("", "contract", bodies[i], ""); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
