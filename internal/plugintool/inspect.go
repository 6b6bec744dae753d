package plugintool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Report is what Inspect learns about a module: from its bytes (exports,
// imports, memory), and from loading it as the agent does (the descriptor
// its init returns).
type Report struct {
	Source string `json:"source"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	// ABIVersions are the versions N the module exports sluice_vN_process
	// for; this agent speaks abi.Version.
	ABIVersions []int `json:"abi_versions"`
	// Descriptor, from init; empty when the module did not load.
	Mode      string  `json:"mode,omitempty"`
	Stateful  bool    `json:"stateful"`
	StateView bool    `json:"state_view"`
	Inputs    []Field `json:"inputs"`
	Outputs   []Field `json:"outputs"`

	Exports []Func   `json:"exports"`
	Memory  *Memory  `json:"memory,omitempty"`
	Imports []Import `json:"imports"`
	// Grants are the processor settings the plugin needs or could use,
	// derived from its imports and descriptor.
	Grants []Grant `json:"grants"`
	// LoadError is why the agent would refuse the module (ABI check,
	// instantiation or init); the static part of the report is still
	// filled in.
	LoadError string `json:"load_error,omitempty"`
}

// Field is a declared column.
type Field struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
}

// Func is an exported function.
type Func struct {
	Name      string `json:"name"`
	Signature string `json:"signature"`
}

// Memory is the module's exported linear memory, in 64 KiB pages.
type Memory struct {
	MinPages uint32  `json:"min_pages"`
	MaxPages *uint32 `json:"max_pages,omitempty"`
}

// Import is an imported function and what it reaches.
type Import struct {
	Module    string `json:"module"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
	// Reaches says what the import touches outside the sandbox and what
	// the host gives without a grant; empty for harmless ones.
	Reaches string `json:"reaches,omitempty"`
}

// Grant is a `wasm` processor setting the plugin needs (Required) or
// could use, and why.
type Grant struct {
	Setting  string `json:"setting"`
	Required bool   `json:"required"`
	Why      string `json:"why"`
}

// Inspect reports on a plugin (a .wasm path or builtin:NAME, in c.Plugin);
// c's YAML config is handed to its init, since a plugin may declare fields
// from its config. A module the agent refuses still gets a report, with
// LoadError set; err is for a module that cannot be read or parsed at all.
func Inspect(ctx context.Context, c StepConfig) (*Report, error) {
	if c.Plugin == "" {
		return nil, errNoPlugin
	}
	bin, err := ReadModule(c.Plugin)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(bin)
	rep := &Report{Source: c.Plugin, Size: len(bin), SHA256: hex.EncodeToString(sum[:]),
		ABIVersions: []int{}, Inputs: []Field{}, Outputs: []Field{}, Exports: []Func{}, Imports: []Import{}, Grants: []Grant{}}
	if err := rep.readStatic(ctx, bin); err != nil {
		return nil, err
	}
	if err := rep.load(ctx, c); err != nil {
		rep.LoadError = err.Error()
	}
	rep.deriveGrants()
	return rep, nil
}

var versionedProcess = regexp.MustCompile(`^sluice_v(\d+)_process$`)

// readStatic fills in what the bytes say, compiled by wazero's interpreter:
// only validation is wanted here, and it compiles a large Go module far
// faster than the optimizing compiler.
func (rep *Report) readStatic(ctx context.Context, bin []byte) error {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return fmt.Errorf("%s is not a valid WebAssembly module: %w", rep.Source, err)
	}
	defer cm.Close(ctx)
	for name, def := range cm.ExportedFunctions() {
		rep.Exports = append(rep.Exports, Func{name, signature(def)})
		if m := versionedProcess.FindStringSubmatch(name); m != nil {
			v, _ := strconv.Atoi(m[1])
			rep.ABIVersions = append(rep.ABIVersions, v)
		}
	}
	sort.Slice(rep.Exports, func(i, j int) bool { return rep.Exports[i].Name < rep.Exports[j].Name })
	sort.Ints(rep.ABIVersions)
	if mem, ok := cm.ExportedMemories()["memory"]; ok {
		rep.Memory = &Memory{MinPages: mem.Min()}
		if mx, ok := mem.Max(); ok {
			rep.Memory.MaxPages = &mx
		}
	}
	seen := map[string]bool{}
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		// Go's linker can list one WASI function twice (fd_write).
		if seen[mod+"."+name] {
			continue
		}
		seen[mod+"."+name] = true
		rep.Imports = append(rep.Imports, Import{Module: mod, Name: name, Signature: signature(def), Reaches: reaches(mod, name)})
	}
	sort.Slice(rep.Imports, func(i, j int) bool {
		a, b := rep.Imports[i], rep.Imports[j]
		if a.Module != b.Module {
			return a.Module < b.Module
		}
		return a.Name < b.Name
	})
	return nil
}

// load loads the module the way the `wasm` processor does and reads the
// descriptor its init returns.
func (rep *Report) load(ctx context.Context, c StepConfig) error {
	s, err := open(ctx, c, false)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	conf, err := wasm.ConfigSpec().ParseYAML(string(s.yaml), nil)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	set, err := wasm.ParseSettings(s.eng, conf)
	if err != nil {
		return err
	}
	mod, err := s.eng.Load(ctx, set.Name, set.Bin, set.Load)
	if err != nil {
		return err
	}
	inst, err := mod.Instantiate(ctx, set.Instance)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", set.Name, err)
	}
	defer inst.Close(ctx)
	d := inst.Descriptor()
	rep.Mode = "bytes"
	if d.Mode == abi.ModeColumns {
		rep.Mode = "columns"
	}
	rep.Stateful, rep.StateView = d.Stateful, d.StateView
	for _, f := range d.In {
		rep.Inputs = append(rep.Inputs, Field{f.Name, f.Type.String(), f.Required})
	}
	for _, f := range d.Out {
		rep.Outputs = append(rep.Outputs, Field{f.Name, f.Type.String(), false})
	}
	return nil
}

// reaches says what an import touches beyond the plugin's own memory and
// what the host gives it by default (ABI.md §10, §8.8).
func reaches(mod, name string) string {
	if mod == abi.ImportModule {
		switch name {
		case abi.ImportStateGet, abi.ImportStateScan:
			return "reads the state store: its own namespace when stateful, others listed in read_state"
		case abi.ImportStateSet, abi.ImportStateDelete:
			return "writes its own state namespace: only a stateful step (key, state.namespace)"
		}
		return ""
	}
	switch {
	case name == "clock_time_get" || name == "clock_res_get":
		return "clock: a fixed fake time unless clock: true"
	case name == "poll_oneoff":
		return "sleep: returns at once unless clock: true"
	case name == "environ_get" || name == "environ_sizes_get":
		return "environment: empty unless listed in env"
	case strings.HasPrefix(name, "path_") || strings.HasPrefix(name, "fd_prestat") || name == "fd_readdir":
		return "files: none unless mounts are given"
	case strings.HasPrefix(name, "sock_"):
		return "network: none (ABI v1 has no network)"
	case name == "random_get":
		return "randomness: deterministic, the same in every instance (not for secrets)"
	case name == "proc_exit":
		return "exit: ends the instance and fails the call"
	}
	return ""
}

// deriveGrants turns the imports and the descriptor into the processor
// settings an operator must or may set for this plugin.
func (rep *Report) deriveGrants() {
	has := func(patterns ...string) []string {
		var found []string
		for _, im := range rep.Imports {
			for _, p := range patterns {
				if im.Name == p || (strings.HasSuffix(p, "*") && strings.HasPrefix(im.Name, strings.TrimSuffix(p, "*"))) {
					found = append(found, im.Name)
					break
				}
			}
		}
		return found
	}
	add := func(setting string, required bool, why string) {
		rep.Grants = append(rep.Grants, Grant{setting, required, why})
	}
	if rep.Stateful {
		add("key, state.namespace", true, "it keeps per-key state (the descriptor's stateful flag)")
	} else if w := has(abi.ImportStateSet, abi.ImportStateDelete); len(w) > 0 {
		add("key, state.namespace", false, "it imports "+strings.Join(w, ", ")+", which only a stateful step may call")
	}
	if r := has(abi.ImportStateGet, abi.ImportStateScan); len(r) > 0 {
		add("read_state: [NAMESPACE, ...]", false, "it imports "+strings.Join(r, ", ")+" to read namespaces other than its own")
	}
	if c := has("clock_time_get", "clock_res_get", "poll_oneoff"); len(c) > 0 {
		add("clock: true", false, "it imports "+strings.Join(c, ", ")+"; without the grant it sees a fixed time and sleeps return at once")
	}
	if e := has("environ_get", "environ_sizes_get"); len(e) > 0 {
		add("env: [NAME, ...]", false, "it imports "+strings.Join(e, ", ")+"; without the grant its environment is empty")
	}
	if f := has("path_*", "fd_prestat*", "fd_readdir"); len(f) > 0 {
		add("mounts: [{host, guest}]", false, "it imports "+strings.Join(f, ", ")+"; without the grant it can open no file")
	}
}

func signature(def api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ",") + ")"
	}
	return names(def.ParamTypes()) + " -> " + names(def.ResultTypes())
}

// WriteJSON prints the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteHuman prints the report for a person: a label per section, each
// section's table aligned on its own.
func (rep *Report) WriteHuman(w io.Writer) error {
	var b strings.Builder
	section := func(label string, rows [][]string) {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for i, r := range rows {
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(tw, "%-9s%s\n", label, strings.Join(r, "\t"))
		}
		_ = tw.Flush() // writes to a strings.Builder, which cannot fail
	}
	line := func(label, text string) { section(label, [][]string{{text}}) }
	line("plugin", rep.Source)
	line("size", fmt.Sprintf("%d bytes", rep.Size))
	line("sha256", rep.SHA256)
	abiLine := "none: it exports no sluice_vN_process (not a Sluice plugin)"
	if len(rep.ABIVersions) > 0 {
		vs := make([]string, len(rep.ABIVersions))
		for i, v := range rep.ABIVersions {
			vs[i] = "v" + strconv.Itoa(v)
		}
		abiLine = strings.Join(vs, ", ") + fmt.Sprintf(" (this agent speaks v%d)", abi.Version)
	}
	line("abi", abiLine)
	if rep.LoadError != "" {
		line("load", "REFUSED: "+rep.LoadError)
	}
	if rep.Mode != "" {
		mode := "bytes (simple mode: each message's body and metadata)"
		if rep.Mode == "columns" {
			mode = "columns (fast mode: typed fields, parsed by the host)"
		}
		line("mode", mode)
		st := "none"
		if rep.Stateful {
			st = "per-key (stateful)"
			if rep.StateView {
				st += ", with a state view"
			}
		}
		line("state", st)
		fields := func(label string, fs []Field) {
			if len(fs) == 0 {
				line(label, "none")
				return
			}
			var rows [][]string
			for _, f := range fs {
				req := ""
				if f.Required {
					req = "required"
				}
				rows = append(rows, []string{f.Name, f.Type, req})
			}
			section(label, rows)
		}
		fields("inputs", rep.Inputs)
		fields("outputs", rep.Outputs)
	}
	if rep.Memory != nil {
		mx := "no maximum"
		if rep.Memory.MaxPages != nil {
			mx = fmt.Sprintf("maximum %d pages", *rep.Memory.MaxPages)
		}
		line("memory", fmt.Sprintf("%d pages (%d KiB) at start, %s", rep.Memory.MinPages, rep.Memory.MinPages*64, mx))
	}
	var rows [][]string
	for _, e := range rep.Exports {
		rows = append(rows, []string{e.Name, e.Signature})
	}
	section("exports", rows)
	rows = nil
	for _, im := range rep.Imports {
		rows = append(rows, []string{im.Module + "." + im.Name, im.Signature, im.Reaches})
	}
	if len(rows) == 0 {
		rows = [][]string{{"none"}}
	}
	section("imports", rows)
	rows = nil
	for _, g := range rep.Grants {
		need := "optional"
		if g.Required {
			need = "REQUIRED"
		}
		rows = append(rows, []string{g.Setting, need, g.Why})
	}
	if len(rows) == 0 {
		rows = [][]string{{"none needed"}}
	}
	section("grants", rows)
	line("pin", "sha256: "+rep.SHA256)
	// tabwriter pads empty last cells; trailing blanks only get in the way.
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	text := strings.Join(lines, "\n") + "\n"
	if _, err := io.WriteString(w, text); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
