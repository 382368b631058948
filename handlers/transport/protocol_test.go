package transport

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestAppendJSONStringIsEncodingJSON: the fast path writes what json.Marshal writes.
func TestAppendJSONStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "123", "contract", "a.b-c_d:e/f", `q"uote`, `back\slash`, "tab\t", "<b>&", "del\x7f", "ünï", "\xff", "\u2028"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("%q: got %s, want %s", s, got[1:], want)
		}
	}
}

// FuzzClientFrame: whatever a bridge.v1 client sends, the decoder neither panics nor
// lets through a frame the rest of the server cannot handle.
func FuzzClientFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeClientFrame(data)
		if err != nil {
			var e *RuleError
			if !errors.As(err, &e) || (e.Kind != Malformed && e.Kind != Unprocessable) {
				t.Fatalf("error %v is not a malformed or unprocessable frame", err)
			}
			return
		}
		switch fr.Type {
		case FrameSend:
			if len(fr.Body) == 0 || len(fr.RoutingKey) > MaxRoutingKeyBytes {
				t.Fatalf("send frame passed with body %q, routing key of %d bytes", fr.Body, len(fr.RoutingKey))
			}
		case FrameSubscribe:
		default:
			t.Fatalf("frame of unknown type %q passed", fr.Type)
		}
	})
}
