package plugintool

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// templates are the files `agent plugin new` writes. Go sources carry a
// .tmpl suffix so the Go tool does not take them for this package's own.
//
//go:embed templates
var templates embed.FS

// ModulePath is the Go module a generated Go plugin must live in: its test
// imports internal packages (wasmbuild, plugintool), and sitting inside the
// module is what lets it build with no replace directive.
const ModulePath = "github.com/sluice-dev/sluice"

// NewOptions say what plugin to create.
type NewOptions struct {
	// Name names the plugin, its .wasm file and (for C) its source file.
	Name string
	// Lang is LangGo (the default) or LangC.
	Lang string
	// Dir is the folder to create; it must not exist or be empty.
	// Default: Name, in the working directory.
	Dir string
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// New writes a ready plugin folder: the handler, a fixture, its expected
// output, a test and a README. It builds and passes its test as written.
// It returns the paths written, relative to the working directory.
func New(ctx context.Context, o NewOptions) ([]string, error) {
	if !validName.MatchString(o.Name) {
		return nil, fmt.Errorf("plugin name %q: use lower-case letters, digits, _ and -, starting with a letter", o.Name)
	}
	if o.Lang == "" {
		o.Lang = LangGo
	}
	if o.Lang != LangGo && o.Lang != LangC {
		return nil, fmt.Errorf("unknown language %q (want %s or %s)", o.Lang, LangGo, LangC)
	}
	if o.Dir == "" {
		o.Dir = o.Name
	}
	if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty: choose another --dir", o.Dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("plugin folder: %w", err)
	}
	if o.Lang == LangGo {
		if err := checkInModule(ctx, o.Dir); err != nil {
			return nil, err
		}
	}
	data := struct{ Name, Dir, CFlags string }{o.Name, filepath.ToSlash(filepath.Clean(o.Dir)), strings.Join(CFlags, " ")}
	files := map[string]string{ // template -> file written
		"common/events.jsonl":   "events.jsonl",
		"common/expected.jsonl": "expected.jsonl",
		"common/gitignore":      ".gitignore",
	}
	if o.Lang == LangGo {
		files["go/main.go.tmpl"] = "main.go"
		files["go/main_test.go.tmpl"] = "main_test.go"
		files["go/README.md.tmpl"] = "README.md"
	} else {
		files["c/plugin.c.tmpl"] = o.Name + ".c"
		files["c/sluice_abi.h"] = "sluice_abi.h"
		files["c/Makefile.tmpl"] = "Makefile"
		files["c/README.md.tmpl"] = "README.md"
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("plugin folder: %w", err)
	}
	var written []string
	for _, src := range slices.Sorted(maps.Keys(files)) {
		body, err := templates.ReadFile(path.Join("templates", src))
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", src, err)
		}
		if strings.HasSuffix(src, ".tmpl") {
			t, err := template.New(src).Option("missingkey=error").Parse(string(body))
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", src, err)
			}
			var b bytes.Buffer
			if err := t.Execute(&b, data); err != nil {
				return nil, fmt.Errorf("template %s: %w", src, err)
			}
			body = b.Bytes()
		}
		dst := filepath.Join(o.Dir, files[src])
		if err := os.WriteFile(dst, body, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", dst, err)
		}
		written = append(written, dst)
	}
	return written, nil
}

// checkInModule refuses a Go plugin folder outside this module, where its
// imports could not resolve without a replace directive.
func checkInModule(ctx context.Context, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("plugin folder: %w", err)
	}
	// The folder may not exist yet: ask from its nearest existing parent.
	existing := abs
	for {
		if st, err := os.Stat(existing); err == nil && st.IsDir() {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	cmd := exec.CommandContext(ctx, "go", "env", "GOMOD")
	cmd.Dir = existing
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("find the Go module of %s: go env GOMOD: %w", dir, err)
	}
	gomod := strings.TrimSpace(string(out))
	mod := ""
	if gomod != "" && gomod != os.DevNull {
		if mod, err = modulePath(gomod); err != nil {
			return err
		}
	}
	if mod != ModulePath {
		where := "is in no Go module"
		if mod != "" {
			where = "is in module " + mod
		}
		return fmt.Errorf("%s %s: a Go plugin is generated inside %s (its test uses the agent's internal packages), e.g. --dir plugins/NAME in a checkout; or use --lang c, which builds anywhere", dir, where, ModulePath)
	}
	return nil
}

// modulePath reads the module line of a go.mod file.
func modulePath(gomod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no module line", gomod)
}
