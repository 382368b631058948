// Package deploy checks what ships: the Dockerfile's build, the binary it makes, and the
// platform manifests (fly.toml, deploy/cloudrun.yaml) against the code's defaults.
package deploy

import (
	"fmt"
	"os"
	"testing"
)

// workDir holds the binary the Dockerfile's build command makes, once for the package.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushbridge-deploy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
