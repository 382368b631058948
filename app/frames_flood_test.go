package app_test

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// maskedFrame is a frame as a client sends it: masked, with the shortest length.
func maskedFrame(op byte, fin bool, payload []byte) []byte {
	if fin {
		op |= 0x80
	}
	f := []byte{op}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, 0x80|byte(n))
	default:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	}
	key := [4]byte{1, 2, 3, 4}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

// TestFrameFloodsClosed: what a client sends is charged frame by frame, whatever the
// frame: a pong flood and a flood of empty continuation frames are closed with 1008
// once past the budget (BRIDGE_MESSAGE_BURST frames, then BRIDGE_MESSAGE_RATE a
// second), and so is a client sending more than BRIDGE_BYTE_RATE; a fragmented message
// kept open by a few pongs a second, within the budget, is closed with 1008 once it is
// BRIDGE_HEARTBEAT old; a text message that is not UTF-8 is closed with 1007. Each
// while another user keeps receiving.
func TestFrameFloodsClosed(t *testing.T) {
	// 5 frames a second, bursts of 10; 1 KiB a second, bursts of 2 KiB (2 messages of
	// BRIDGE_MAX_MESSAGE_BYTES).
	ls := newLimitServer(t, map[string]string{"BRIDGE_HEARTBEAT": "1s", "BRIDGE_BYTE_RATE": "1024"})
	const window = 2 * time.Second // the budget's: burst / rate, and two heartbeats
	const slack = 5 * time.Second  // shared, busy cores
	text, cont, pong := byte(websocket.TextMessage), byte(0), byte(websocket.PongMessage)
	for _, tc := range []struct {
		name   string
		start  [][]byte      // sent once
		repeat [][]byte      // then sent again and again
		every  time.Duration // this often (0: as fast as the socket takes them)
		code   int
		reason string
	}{
		{"pong flood", nil, [][]byte{maskedFrame(pong, true, nil)}, 0, websocket.ClosePolicyViolation, "rate"},
		{"empty continuation flood", [][]byte{maskedFrame(text, false, []byte("{"))}, [][]byte{maskedFrame(cont, false, nil)}, 0, websocket.ClosePolicyViolation, "rate"},
		{"message never finished, kept open by pongs", [][]byte{maskedFrame(text, false, []byte("{"))}, [][]byte{maskedFrame(pong, true, nil)}, 300 * time.Millisecond, websocket.ClosePolicyViolation, "not finished"},
		{"bytes over BRIDGE_BYTE_RATE", nil, [][]byte{maskedFrame(byte(websocket.BinaryMessage), true, make([]byte, 1000))}, 0, websocket.ClosePolicyViolation, "byte rate"},
		{"text not UTF-8", [][]byte{maskedFrame(text, true, []byte{'h', 'i', 0xff})}, nil, 0, websocket.CloseInvalidFramePayloadData, "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := websocket.DefaultDialer.Dial(ls.WSURL("/ws?user=a"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			nc := c.NetConn()
			start := time.Now()
			for _, f := range tc.start {
				if _, err := nc.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if tc.repeat != nil {
				go repeatFrames(nc, tc.repeat, tc.every)
			}
			code, reason := serverClose(t, c, window+slack)
			took := time.Since(start)
			if code != tc.code || !strings.Contains(reason, tc.reason) {
				t.Errorf("got close %d %q, want %d (%s)", code, reason, tc.code, tc.reason)
			}
			if took > window+slack {
				t.Errorf("closed after %s, want within the budget's window %s (+%s)", took, window, slack)
			}
			t.Logf("close %d %q after %s", code, reason, took.Round(time.Millisecond))
			ls.bystanderReceives(t)
		})
	}
}

// repeatFrames writes frames to nc every period (0: back to back) until a write fails.
func repeatFrames(nc net.Conn, frames [][]byte, every time.Duration) {
	var batch []byte
	for _, f := range frames {
		batch = append(batch, f...)
	}
	if every == 0 { // many at once, as a flood is sent
		for len(batch) < 16<<10 {
			batch = append(batch, batch...)
		}
	}
	for {
		if _, err := nc.Write(batch); err != nil {
			return
		}
		if every > 0 {
			time.Sleep(every) // the client's pace, not a wait for an event
		}
	}
}

// serverClose reads until the server's close frame and returns its code and reason.
func serverClose(t *testing.T, c *websocket.Conn, within time.Duration) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			t.Fatalf("no close frame within %s: %v", within, err)
		}
	}
}
