package app_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Shape of the slow-client test. The kernel buffers between the server and a client
// that never reads hold about 3 MiB on loopback here; broadcasts go out in batches
// until the server cuts that client, up to slowMaxBytes. A batch is no longer than
// the send queue: the reader has read the batch before, so a whole batch fits in its
// queue even when its writer is not scheduled before the last of it arrives (with 8,
// a loaded machine saw the reader cut as slow too).
const (
	slowBodyBytes = 32 << 10
	slowBatch     = 4
	slowMaxBytes  = 64 << 20
	slowQueue     = "4"
)

type slowBody struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

func TestNonReadingClientIsCutAndOthersKeepReceiving(t *testing.T) {
	forEachMode(t, func(t *testing.T, m *brokerMode) {
		s := apptest.Start(t, m.with(map[string]string{
			"BRIDGE_SEND_QUEUE": slowQueue, "BRIDGE_MAX_MESSAGE_BYTES": "1048576",
		}))
		stalled := apptest.DialStalled(t, s.WSURL("/ws/yxd/stalled"), "")
		reader := apptest.DialWS(t, s.WSURL("/ws/yxd/reader"), "", nil)
		apptest.Eventually(t, 5*time.Second, "both registered", func() bool { return connCount(t, s) == 2 })

		pad := strings.Repeat("x", slowBodyBytes)
		sent := 0
		for metric(t, s, "pushbridge_slow_client_disconnects_total") == 0 {
			if sent*slowBodyBytes > slowMaxBytes {
				t.Fatalf("the client that never reads was not cut after %d MiB", sent*slowBodyBytes>>20)
			}
			for range slowBatch {
				b, _ := json.Marshal(slowBody{N: sent, Pad: pad})
				m.publish(t, "contract", b, "") // a broadcast: both clients are recipients
				sent++
			}
			// Each batch reaches the reader before the next goes out, so the cut
			// cannot be missed by a reader that is itself behind.
			for n := sent - slowBatch; n < sent; n++ {
				f := reader.Next(t, 30*time.Second)
				var got slowBody
				if err := json.Unmarshal(f.Data, &got); err != nil || got.N != n {
					t.Fatalf("reader frame %d: n=%d err=%v, want n=%d", n, got.N, err, n)
				}
			}
		}
		apptest.Eventually(t, 10*time.Second, "the stalled client unregistered", func() bool { return connCount(t, s) == 1 })
		if got := metric(t, s, "pushbridge_slow_client_disconnects_total"); got != 1 {
			t.Errorf("slow disconnects: got %v, want 1 (the reader was cut too?)", got)
		}
		assertSocketEnds(t, stalled)

		// The reader is still connected and served.
		last := []byte(`{"text":"still here"}`)
		m.publish(t, "contract", last, "")
		if f := reader.Next(t, 10*time.Second); string(f.Data) != string(last) {
			t.Fatalf("reader got %q after the cut, want %q", f.Data, last)
		}
	})
}

// assertSocketEnds reads what the server had queued on c until the server's close
// shows (EOF or a reset), failing if the socket stays open.
func assertSocketEnds(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, syscall.ECONNRESET):
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the stalled client's socket is still open")
	default:
		t.Fatalf("reading the stalled socket: %v", err)
	}
}
