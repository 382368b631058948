package app

import (
	"fmt"
	"strings"
)

// platformMarkers are variables a hosting platform sets in every container it runs:
// where one is set, this is a deployment, and dev mode would open it to anyone.
var platformMarkers = []struct{ env, platform string }{
	{"FLY_ALLOC_ID", "Fly.io"},
	{"K_SERVICE", "Cloud Run (Knative)"},
}

// checkDev refuses dev mode where it can only be a mistake: beside a client auth
// setting (dev mode would silently ignore it, letting anyone in as anyone) or on a
// hosting platform. Each refusal is one line naming the variable.
func checkDev(c *Config, getenv func(string) string) error {
	if !c.Dev {
		return nil
	}
	if set := keySources(c); len(set) > 0 {
		verb := "is"
		if len(set) > 1 {
			verb = "are"
		}
		return fmt.Errorf("%s %s set together with -dev (BRIDGE_DEV), which ignores client auth and lets anyone in as anyone: unset one or the other", strings.Join(set, " and "), verb)
	}
	for _, m := range platformMarkers {
		if getenv(m.env) != "" {
			return fmt.Errorf("%s is set: this runs on %s, where -dev (BRIDGE_DEV) would let anyone in as anyone: configure client auth (BRIDGE_JWT_SECRET, BRIDGE_JWT_PUBLIC_KEY_FILE or BRIDGE_JWT_JWKS_URL) instead", m.env, m.platform)
		}
	}
	return nil
}
