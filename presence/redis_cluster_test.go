package presence

import (
	"slices"
	"testing"
)

// TestParseClusterURL: seeds, credentials and TLS are read from a cluster URL; a URL
// without usable seeds, or naming a database other than 0, is refused.
func TestParseClusterURL(t *testing.T) {
	opt, err := parseClusterURL("rediss+cluster://me:secret@10.0.0.1:7000,10.0.0.2:7001/0")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:7000", "10.0.0.2:7001"}; !slices.Equal(opt.Addrs, want) {
		t.Errorf("seeds %q, want %q", opt.Addrs, want)
	}
	if opt.Username != "me" || opt.Password != "secret" || opt.TLSConfig == nil {
		t.Errorf("user %q password %q TLS %v: want me, secret, TLS", opt.Username, opt.Password, opt.TLSConfig != nil)
	}
	if opt, err := parseClusterURL("redis+cluster://127.0.0.1:7000"); err != nil || opt.TLSConfig != nil || len(opt.Addrs) != 1 {
		t.Errorf("one seed, no TLS: %+v, %v", opt, err)
	}
	for _, bad := range []string{"redis+cluster://", "redis+cluster://host", "redis+cluster://a:1,,b:2", "redis+cluster://a:1/3", "rediss+cluster://a:1?dial_timeout=soon"} {
		if _, err := parseClusterURL(bad); err == nil {
			t.Errorf("parseClusterURL(%q): no error", bad)
		}
		if !IsClusterURL(bad) {
			t.Errorf("IsClusterURL(%q) = false", bad)
		}
	}
	if IsClusterURL("redis://a:1/0") {
		t.Error("IsClusterURL(redis://…) = true")
	}
}
