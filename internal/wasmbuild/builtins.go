package wasmbuild

// Builtins maps each plugin embedded in the agent to the directory of its
// Go source, relative to the module root. Its .wasm lands in
// plugins/builtin/wasm/<name>.wasm.
func Builtins() map[string]string {
	return map[string]string{
		// The seed's transform step; its source doubles as the example users copy.
		"transform": "examples/wasm/transform",
		// The seed's ML steps, each a worked example of the SDK.
		"dag":      "plugins/builtin/dag",
		"features": "plugins/builtin/features",
		"sales":    "plugins/builtin/sales",
		"score":    "plugins/builtin/score",
		"validate": "plugins/builtin/validate",
	}
}
