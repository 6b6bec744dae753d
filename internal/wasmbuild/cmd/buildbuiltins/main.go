// Command buildbuiltins rebuilds every builtin plugin's .wasm into
// plugins/builtin/wasm. Run it from the module root:
//
//	go run ./internal/wasmbuild/cmd/buildbuiltins
//
// CI runs it on a clean checkout and fails if the bytes differ from what is
// committed, so the embedded modules are always what their source builds.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

func main() {
	ctx := context.Background()
	builtins := wasmbuild.Builtins()
	names := make([]string, 0, len(builtins))
	for name := range builtins {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out := filepath.Join("plugins", "builtin", "wasm", name+".wasm")
		if err := wasmbuild.Build(ctx, builtins[name], out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("built", out)
	}
}
