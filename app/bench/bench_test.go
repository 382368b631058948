package bench_test

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/pushbridge/pushbridge/app"
)

// TestBenchEachTransport: `pushbridge bench` against an in-process dev server, on each
// transport, counts every delivery once and reports no loss.
func TestBenchEachTransport(t *testing.T) {
	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"pushbridge", "bench", "-transport", tr, "-conns", "20", "-users", "10",
				"-rate", "400", "-duration", "1s", "-broadcast-every", "50"}
			if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
				t.Fatalf("bench: %v:\n%s\n%s", err, out.String(), errOut.String())
			}
			m := regexp.MustCompile(`deliveries +(\d+) of (\d+) expected`).FindStringSubmatch(out.String())
			if m == nil || m[1] != m[2] || m[1] == "0" {
				t.Fatalf("deliveries not all counted:\n%s", out.String())
			}
			for _, want := range []string{"lost          0\n", "duplicates    0\n", "connecting 20 " + tr + " clients"} {
				if !bytes.Contains(out.Bytes(), []byte(want)) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestBenchRefusesAnUnknownTransport: a typo is an error, not a silent WebSocket run.
func TestBenchRefusesAnUnknownTransport(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"pushbridge", "bench", "-transport", "carrier-pigeon"}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err == nil ||
		!bytes.Contains([]byte(err.Error()), []byte("-transport must be ws, sse or poll")) {
		t.Fatalf("bench answered %v", err)
	}
}
