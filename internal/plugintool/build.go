package plugintool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// Languages a plugin folder can be written in.
const (
	LangGo = "go"
	LangC  = "c"
)

// DetectLang says what a plugin folder is written in: C if it has .c files
// (a C plugin's folder may hold a Go test, as examples/wasm/c-transform
// does), else Go if it has Go source.
func DetectLang(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("plugin folder: %w", err)
	}
	hasGo := false
	for _, e := range entries {
		switch name := e.Name(); {
		case e.IsDir():
		case strings.HasSuffix(name, ".c"):
			return LangC, nil
		case strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go"):
			hasGo = true
		}
	}
	if hasGo {
		return LangGo, nil
	}
	return "", fmt.Errorf("%s holds no .c or .go files: not a plugin folder", dir)
}

// DefaultOutput is where Build writes a folder's module: NAME.wasm inside
// it, NAME being the folder's name.
func DefaultOutput(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("plugin folder: %w", err)
	}
	return filepath.Join(abs, filepath.Base(abs)+".wasm"), nil
}

// Build compiles the plugin in dir into out, in the language lang ("" to
// detect it); warnings of a build that succeeded go to warn (nil drops
// them). Both toolchains are driven so that the same source and
// toolchain give the same bytes on any machine and in any folder, which
// is what makes a sha256 pin (and CI's rebuild check) meaningful.
func Build(ctx context.Context, dir, out, lang string, warn io.Writer) error {
	if lang == "" {
		var err error
		if lang, err = DetectLang(dir); err != nil {
			return err
		}
	}
	switch lang {
	case LangGo:
		// Flags live in wasmbuild, shared with the builtins and tests.
		return wasmbuild.Build(ctx, dir, out)
	case LangC:
		return BuildC(ctx, dir, out, warn)
	}
	return fmt.Errorf("unknown plugin language %q (want %s or %s)", lang, LangGo, LangC)
}

// CFlags are clang's flags for a C plugin: a WASI preview 1 reactor (a
// library whose _initialize runs constructors; the agent never calls
// _start) at -O2. -ffile-prefix-map keeps the folder's path out of the
// module (__FILE__ in an assert, or debug info if someone adds -g), and
// --strip-debug drops the DWARF that Debian's wasi-libc.a carries, which
// is 40 KB of no use to the agent. The name section stays, so a trap's
// stack trace names functions.
var CFlags = []string{"--target=wasm32-wasi", "-O2", "-Wall", "-mexec-model=reactor", "-Wl,--strip-debug"}

// cCompiler is the C compiler: $CC if it is a clang, else clang. make and
// shells often set CC=cc, which cannot target Wasm.
func cCompiler() string {
	if cc := os.Getenv("CC"); strings.Contains(filepath.Base(cc), "clang") {
		return cc
	}
	return "clang"
}

// BuildC compiles every .c file in dir (sorted, so the link order is
// fixed) into the module out; compiler warnings go to warn (nil drops them).
func BuildC(ctx context.Context, dir, out string, warn io.Writer) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	srcs, err := filepath.Glob(filepath.Join(absDir, "*.c"))
	if err != nil || len(srcs) == 0 {
		return fmt.Errorf("build %s: no .c files", dir)
	}
	slices.Sort(srcs)
	args := append(slices.Clone(CFlags), "-ffile-prefix-map="+absDir+"=.", "-o", absOut)
	for _, s := range srcs {
		args = append(args, filepath.Base(s))
	}
	cmd := exec.CommandContext(ctx, cCompiler(), args...)
	cmd.Dir = absDir
	if msg, err := cmd.CombinedOutput(); err != nil {
		var notFound *exec.Error
		if errors.As(err, &notFound) {
			return fmt.Errorf("build %s: %w; %s", dir, err, cToolchainHint)
		}
		return fmt.Errorf("build %s: %s %s: %w\n%s%s", dir, cCompiler(), strings.Join(args, " "), err, msg, hintFor(string(msg)))
	} else if len(msg) > 0 && warn != nil {
		// Warnings: the build succeeded, but the author should see them.
		_, _ = warn.Write(msg)
	}
	return nil
}

// cToolchainHint says what a Debian machine needs for C plugins.
const cToolchainHint = "C plugins need clang with the wasm32-wasi target, wasm-ld, wasi-libc and compiler-rt for wasm32 (Debian 12: apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32)"

// hintFor recognises clang's complaints about a missing part of the
// toolchain, which otherwise read like bugs in the plugin.
func hintFor(msg string) string {
	for _, s := range []string{
		"'stdint.h' file not found", "'stdlib.h' file not found", "'string.h' file not found", // wasi-libc's headers
		"cannot open crt1-reactor.o", "unable to find library -lc", // wasi-libc's libraries
		"libclang_rt.builtins-wasm32.a",       // compiler-rt for wasm32
		`Executable "wasm-ld" doesn't exist`,  // lld
		"No available targets are compatible", // a clang built without WebAssembly
	} {
		if strings.Contains(msg, s) {
			return "\n" + cToolchainHint
		}
	}
	return ""
}

// CheckC reports whether the C toolchain can build a plugin here, by
// building a small one; the error says what to install.
func CheckC(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sluice-cc-probe-")
	if err != nil {
		return fmt.Errorf("probe C toolchain: %w", err)
	}
	defer os.RemoveAll(dir)
	const probe = `#include <stdint.h>
#include <stdlib.h>
__attribute__((export_name("probe"))) uint64_t probe(uint64_t a, uint64_t b) { void *p = malloc(8); free(p); return a / b; }
`
	if err := os.WriteFile(filepath.Join(dir, "probe.c"), []byte(probe), 0o644); err != nil {
		return fmt.Errorf("probe C toolchain: %w", err)
	}
	if err := BuildC(ctx, dir, filepath.Join(dir, "probe.wasm"), nil); err != nil {
		if !strings.Contains(err.Error(), cToolchainHint) {
			err = fmt.Errorf("%w\n%s", err, cToolchainHint)
		}
		return err
	}
	return nil
}
