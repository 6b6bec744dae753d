// Package builtin embeds the Wasm plugins that ship inside the agent, so a
// pipeline can name one (`wasm: {builtin: transform}`) with nothing on disk.
// Each module is built from Go source with plugins/sdk by
// `go run ./internal/wasmbuild/cmd/buildbuiltins`; CI rebuilds them and fails
// if the committed bytes differ.
package builtin

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed wasm/*.wasm
var modules embed.FS

// Lookup returns the module bytes of the builtin plugin called name.
func Lookup(name string) ([]byte, bool) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return nil, false
	}
	b, err := modules.ReadFile("wasm/" + name + ".wasm")
	if err != nil {
		return nil, false
	}
	return b, true
}

// Names lists the builtin plugins, sorted.
func Names() []string {
	entries, _ := fs.ReadDir(modules, "wasm")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".wasm"))
	}
	sort.Strings(names)
	return names
}
