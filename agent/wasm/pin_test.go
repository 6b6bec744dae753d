package wasm_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/agent/wasm"
)

// TestPinSHA256: a processor's sha256 pins its module's bytes; a module
// that hashes otherwise is refused at load, naming both hashes, before
// any of it is compiled or run.
func TestPinSHA256(t *testing.T) {
	bin, err := os.ReadFile(plugins["transform"])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	good := hex.EncodeToString(sum[:])
	other := strings.Repeat("0", 64)
	builtinBin := map[string][]byte{"pinned": bin}
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: func(name string) ([]byte, bool) {
		b, ok := builtinBin[name]
		return b, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(t.Context()) })
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error; none: it loads
		mismatch   bool
	}{
		{name: "no pin", yaml: "path: " + plugins["transform"]},
		{name: "matching pin", yaml: "path: " + plugins["transform"] + "\nsha256: " + good},
		{name: "matching pin, upper case", yaml: "path: " + plugins["transform"] + "\nsha256: ' " + strings.ToUpper(good) + " '"},
		{name: "matching pin, builtin", yaml: "builtin: pinned\nsha256: " + good},
		{name: "other module", yaml: "path: " + plugins["transform"] + "\nsha256: " + other, mismatch: true,
			want: []string{"plugin " + plugins["transform"], "expected sha256 " + other, "the module's is " + good}},
		{name: "other module, builtin", yaml: "builtin: pinned\nsha256: " + other, mismatch: true,
			want: []string{"plugin builtin:pinned", "expected sha256 " + other}},
		{name: "not a hash", yaml: "path: " + plugins["transform"] + "\nsha256: abc123",
			want: []string{`sha256: "abc123" is not a SHA-256 (want 64 hex digits`}},
		{name: "not hex", yaml: "path: " + plugins["transform"] + "\nsha256: " + strings.Repeat("zz", 32),
			want: []string{"is not a SHA-256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProcessor(t, eng, tc.yaml)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded, want it refused")
			}
			if errors.Is(err, wasm.ErrPinMismatch) != tc.mismatch {
				t.Errorf("errors.Is(err, ErrPinMismatch) = %v, want %v", !tc.mismatch, tc.mismatch)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
