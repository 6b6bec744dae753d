package wasm

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/plugins/builtin"
)

// TestLoadOnceConcurrently: Loads of one module at the same time (a
// Prefetch and the step it is for) compile it once and share it, each
// counted; Loads of another module compile beside them; a Load after
// Close is refused.
func TestLoadOnceConcurrently(t *testing.T) {
	ctx := context.Background()
	eng, err := NewEngine(EngineConfig{Builtins: builtin.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	sales, _ := eng.Builtin("sales")
	validate, _ := eng.Builtin("validate")
	opts := LoadOptions{MemoryLimitPages: 1024}
	var wg sync.WaitGroup
	mods := make([]*Module, 8)
	errs := make([]error, len(mods))
	for i := range mods {
		bin, name := sales, "builtin:sales"
		if i%4 == 3 {
			bin, name = validate, "builtin:validate"
		}
		wg.Go(func() { mods[i], errs[i] = eng.Load(ctx, name, bin, opts) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("load %d: %v", i, err)
		}
	}
	for i, m := range mods {
		first := mods[0]
		if i%4 == 3 {
			first = mods[3]
		}
		if m.compiled != first.compiled {
			t.Errorf("load %d compiled its module again", i)
		}
	}
	for _, tc := range []struct {
		bin  []byte
		refs int
	}{{sales, 6}, {validate, 2}} {
		key := moduleKey{runtimeKey{opts.MemoryLimitPages, opts.Interrupt}, sha256.Sum256(tc.bin)}
		if got := eng.refs[key]; got != tc.refs {
			t.Errorf("a module loaded %d times is counted %d times", tc.refs, got)
		}
	}
	if len(eng.modules) != 2 || len(eng.compiling) != 0 {
		t.Errorf("%d modules cached and %d compiling, want 2 and 0", len(eng.modules), len(eng.compiling))
	}
	if err := eng.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Load(ctx, "builtin:sales", sales, opts); err == nil || !strings.Contains(err.Error(), "engine is closed") {
		t.Errorf("load after close: %v, want the engine is closed", err)
	}
}
