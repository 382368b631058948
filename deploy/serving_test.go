package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pushbridge/pushbridge/app/apptest"
)

// Drain and kill.
const (
	// exitMargin is what the process needs after the drain (BRIDGE_SHUTDOWN_TIMEOUT)
	// to close RabbitMQ and Redis and exit; a platform's kill must not come sooner.
	exitMargin = 2 * time.Second
)

// checkServes runs the image's command with the manifest's environment — the config
// parses the manifest's own values — on the test's own RabbitMQ topology and Redis
// prefix with stand-in secrets, then checks that every probe path answers 200 (the
// route exists, and the instance is ready with a real broker and Redis) and that
// SIGTERM drains it to exit 0.
func checkServes(t *testing.T, bin string, d *dockerfile, manifestEnv map[string]string, paths []string) {
	t.Helper()
	own := map[string]string{
		"AMQP_URL":          apptest.AMQPURL(),
		"BRIDGE_JWT_SECRET": randomHex(t),
		"BRIDGE_API_KEY":    randomHex(t),
	}
	env := servingEnv(d.Env, manifestEnv, own, apptest.NewTopology(t, "contract").Env, apptest.NewRedis(t).Env)
	p := startProc(t, bin, slices.Clone(d.Command[1:]), env)
	paths = slices.Compact(slices.Sorted(slices.Values(paths)))
	for _, path := range paths {
		apptest.Eventually(t, startTimeout, "GET "+path+" answers 200", func() bool {
			code, err := p.status(path)
			return err == nil && code == http.StatusOK
		})
	}
	if err := p.terminate(t); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0\n%s", err, p.stderr)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
