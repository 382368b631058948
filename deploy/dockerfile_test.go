package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// repoRoot is where the Dockerfile's `COPY . .` takes the source from.
const repoRoot = ".."

// dockerfile is what the tests need of the Dockerfile: how the binary is built, and
// how the final image runs it.
type dockerfile struct {
	BuildEnv  []string // VAR=value words before `go build`
	BuildArgs []string // `build` and its arguments, -o included
	Output    string   // the -o path of the build
	Copied    string   // what the final stage copies from an earlier stage
	CopiedTo  string   // and where it puts it
	Env       map[string]string
	Expose    []int
	Command   []string // ENTRYPOINT then CMD
}

// readDockerfile reads the repository's Dockerfile. It follows the plain forms this
// project uses and says so when the file leaves them, rather than guess.
func readDockerfile() (*dockerfile, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	d := &dockerfile{}
	for _, ins := range instructions(string(b)) {
		keyword, rest, _ := strings.Cut(ins, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(keyword) {
		case "FROM": // a new stage: the final image is what the last one says
			d.Env, d.Expose, d.Command, d.Copied, d.CopiedTo = map[string]string{}, nil, nil, "", ""
		case "RUN":
			if strings.Contains(rest, "go build") {
				if err := d.readBuild(rest); err != nil {
					return nil, fmt.Errorf("Dockerfile: RUN %s: %w", rest, err)
				}
			}
		case "COPY":
			if w := strings.Fields(rest); len(w) == 3 && strings.HasPrefix(w[0], "--from=") {
				d.Copied, d.CopiedTo = w[1], w[2]
			}
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("Dockerfile: ENV %s: want KEY=value", rest)
				}
				d.Env[k] = v
			}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					return nil, fmt.Errorf("Dockerfile: EXPOSE %s: %w", rest, err)
				}
				d.Expose = append(d.Expose, n)
			}
		case "ENTRYPOINT", "CMD":
			var words []string
			if err := json.Unmarshal([]byte(rest), &words); err != nil {
				return nil, fmt.Errorf("Dockerfile: %s %s: want the JSON (exec) form: %w", keyword, rest, err)
			}
			d.Command = append(d.Command, words...)
		}
	}
	switch {
	case d.BuildArgs == nil:
		return nil, errors.New("Dockerfile: no RUN with `go build`")
	case d.Output == "":
		return nil, errors.New("Dockerfile: the go build has no -o")
	case len(d.Command) == 0:
		return nil, errors.New("Dockerfile: the final stage has no ENTRYPOINT or CMD")
	}
	return d, nil
}

// readBuild takes `VAR=value ... go build args...` apart.
func (d *dockerfile) readBuild(line string) error {
	words, err := shellWords(line)
	if err != nil {
		return err
	}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		d.BuildEnv, words = append(d.BuildEnv, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return errors.New("want [VAR=value ...] go build ...")
	}
	d.BuildArgs = words[1:]
	for i, w := range d.BuildArgs {
		switch {
		case w == "-o" && i+1 < len(d.BuildArgs):
			d.Output = d.BuildArgs[i+1]
		case strings.HasPrefix(w, "-o="):
			d.Output = strings.TrimPrefix(w, "-o=")
		}
	}
	return nil
}

// buildArgsTo is the build's arguments with the output put at out.
func (d *dockerfile) buildArgsTo(out string) []string {
	args := make([]string, 0, len(d.BuildArgs))
	for i := 0; i < len(d.BuildArgs); i++ {
		switch w := d.BuildArgs[i]; {
		case w == "-o":
			args = append(args, "-o", out)
			i++
		case strings.HasPrefix(w, "-o="):
			args = append(args, "-o="+out)
		default:
			args = append(args, w)
		}
	}
	return args
}

// instructions joins continued lines and drops comments and blank lines.
func instructions(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// shellWords splits a command line as sh would for the plain words, single and double
// quotes a RUN line of this Dockerfile uses; anything that would need a shell to
// mean something (variables, pipes, several commands) is an error.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
			continue
		case strings.IndexByte("$`;&|<>(){}*?[", c) >= 0:
			return nil, fmt.Errorf("%q needs a shell; the test runs only plain words", c)
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unclosed '")
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '$' || s[j] == '`' {
					return nil, fmt.Errorf("%q in double quotes needs a shell", s[j])
				}
				if s[j] == '\\' && j+1 < len(s) && strings.IndexByte("\"\\", s[j+1]) >= 0 {
					j++ // in double quotes a backslash escapes only " and \ (and $ `, refused above)
				}
				w.WriteByte(s[j])
			}
			if j == len(s) {
				return nil, errors.New(`unclosed "`)
			}
			i = j
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		default:
			w.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
