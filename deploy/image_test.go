package deploy

import (
	"debug/elf"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// maxBinaryBytes is the ceiling on the shipped binary (the 20 MB): the image
// is the binary plus ~2 MiB of distroless base, and every instance pulls it at start.
const maxBinaryBytes = 20_000_000

// built is the binary made by the Dockerfile's own build command, once for the package.
var built struct {
	once sync.Once
	path string
	err  error
}

// imageBinary builds the binary as the Dockerfile's build stage does — the command is
// read from the Dockerfile, so the test follows it — and returns its path.
func imageBinary(t *testing.T) (string, *dockerfile) {
	t.Helper()
	d, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	built.once.Do(func() {
		out := filepath.Join(workDir, "pushbridge")
		cmd := exec.Command("go", d.buildArgsTo(out)...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), d.BuildEnv...)
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%s go %s: %w\n%s", strings.Join(d.BuildEnv, " "), strings.Join(cmd.Args[1:], " "), err, b)
			return
		}
		built.path = out
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path, d
}

func TestDockerfileBuildsStaticBinary(t *testing.T) {
	bin, d := imageBinary(t)
	if !slices.Contains(d.BuildEnv, "CGO_ENABLED=0") {
		t.Errorf("the build runs with %q, want CGO_ENABLED=0 (distroless static has no libc)", d.BuildEnv)
	}
	if d.Copied != d.Output {
		t.Errorf("the final stage copies %q, the build writes %q", d.Copied, d.Output)
	}
	if d.Command[0] != d.CopiedTo {
		t.Errorf("the image runs %q, the binary is copied to %q", d.Command[0], d.CopiedTo)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %s program header: dynamically linked, distroless static cannot run it", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary needs shared libraries %q (err %v), want none", libs, err)
	}

	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binary: %d bytes (%.1f MiB)", st.Size(), float64(st.Size())/(1<<20))
	if st.Size() >= maxBinaryBytes {
		t.Errorf("binary is %d bytes, want under %d", st.Size(), maxBinaryBytes)
	}
}

// The binary starts as the image starts it (ENTRYPOINT, CMD, the image's ENV), serves
// /healthz, and drains and exits 0 on SIGTERM.
func TestImageBinaryStartsAndStops(t *testing.T) {
	bin, d := imageBinary(t)
	env := maps.Clone(d.Env)
	env["PORT"] = "0" // the image's port may be taken here; the server reports its own
	// The image's command runs bin (the ENTRYPOINT path is where the image has it);
	// -dev: no secrets and no broker are needed to start.
	p := startProc(t, bin, append(slices.Clone(d.Command[1:]), "-dev"), env)

	if code, err := p.status("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /healthz: %d %v, want 200\n%s", code, err, p.stderr)
	}
	if err := p.terminate(t); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0\n%s", err, p.stderr)
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pushbridge .`,
			want: []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/pushbridge", "."}},
		{in: `go build -ldflags '-s -w'  -o\ x .`, want: []string{"go", "build", "-ldflags", "-s -w", "-o x", "."}},
		{in: `a "b \"c\" \d"`, want: []string{"a", `b "c" \d`}},
		{in: `go build -o $OUT .`, err: true},
		{in: `go build . && strip x`, err: true},
		{in: `go build "-ldflags=-X main.v=$(git describe)" .`, err: true},
		{in: `go build "-s -w`, err: true},
	} {
		got, err := shellWords(tc.in)
		if (err != nil) != tc.err || (!tc.err && !slices.Equal(got, tc.want)) {
			t.Errorf("shellWords(%s) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
