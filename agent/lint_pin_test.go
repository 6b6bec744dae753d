package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/plugins/builtin"
)

// TestLintPinnedPlugin: lint loads each wasm step, so a module whose bytes
// do not hash to the step's sha256 pin is reported at the step, with both
// hashes; a matching pin is clean.
func TestLintPinnedPlugin(t *testing.T) {
	bin, ok := builtin.Lookup("transform")
	if !ok {
		t.Fatal("no builtin transform")
	}
	sum := sha256.Sum256(bin)
	good, bad := hex.EncodeToString(sum[:]), strings.Repeat("ab", 32)
	a := newTestAgent(t)
	for _, tc := range []struct {
		name, pin string
		want      []string
	}{
		{"matching pin", good, nil},
		{"stale pin", bad, []string{"wasm: plugin does not match its pinned sha256", "expected sha256 " + bad, "the module's is " + good}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "input:\n  generate: {count: 1, mapping: 'root = {}'}\npipeline:\n  processors:\n    - wasm:\n        builtin: transform # step\n        sha256: " + tc.pin + "\noutput:\n  drop: {}\n"
			src := filepath.Join(t.TempDir(), "pinned.yaml")
			writeFile(t, src, doc)
			probs := a.Lint(t.Context(), []string{src})
			if len(tc.want) == 0 {
				if len(probs) != 0 {
					t.Fatalf("want no problems, got%s", formatProblems(probs))
				}
				return
			}
			line := lineOf(t, doc, "# step")
			if len(probs) != 1 || probs[0].Source != src || probs[0].Line != line {
				t.Fatalf("want one problem at %s:%d, got%s", src, line, formatProblems(probs))
			}
			for _, w := range tc.want {
				if !strings.Contains(probs[0].Msg, w) {
					t.Errorf("problem %q lacks %q", probs[0].Msg, w)
				}
			}
		})
	}
}
