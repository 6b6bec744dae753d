package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

const originDefault = "default"

// Load builds the effective configuration from, lowest precedence first:
// the built-in defaults, the config file named by the -c/--config flag or
// else SLUICE_CONFIG (none if neither is set), SLUICE_* variables in environ
// (e.g. os.Environ()), and the flags in fs that the user changed. fs must
// already be parsed; it may be nil, and may hold flags other than those of
// RegisterFlags, which are ignored.
//
// Nothing is ignored silently: unknown file keys and unknown SLUICE_*
// variables are errors, as are values of the wrong type, even ones a higher
// layer overrides. All problems are returned together in one error, each
// naming the key and where its value came from. The error wraps the
// underlying errors, so errors.Is(err, fs.ErrNotExist) reports a missing
// config file.
func Load(fs *pflag.FlagSet, environ []string) (*Loaded, error) {
	specs := keySpecs()
	var probs []error

	defaults, err := defaultLayer()
	if err != nil {
		return nil, err
	}
	layers := []layer{defaults}
	if path, namedBy := configPath(fs, environ); path != "" {
		l, errs := fileLayer(path, namedBy, specs)
		probs = append(probs, errs...)
		layers = append(layers, l)
	}
	l, errs := envLayer(environ, specs)
	probs = append(probs, errs...)
	layers = append(layers, l)
	l, errs = flagLayer(fs, specs)
	probs = append(probs, errs...)
	layers = append(layers, l)

	k := koanf.New(".")
	owner := make(map[string]layer, len(specs))
	for _, l := range layers {
		// Values are decoded one by one before merging so that a bad one is
		// blamed on the layer it came from, and so that it cannot hide
		// problems in other keys by failing the merged decode below.
		probs = append(probs, l.dropUndecodable(specs)...)
		if err := k.Load(confmap.Provider(l.values, ""), nil); err != nil {
			return nil, fmt.Errorf("merge config layers: %w", err)
		}
		for key := range l.values {
			owner[key] = l
		}
	}

	var cfg Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: decoderConfig()}); err != nil {
		// Every value left has decoded on its own, so this is a bug in this
		// package rather than in the user's configuration.
		return nil, fmt.Errorf("decode merged config: %w", err)
	}
	for _, s := range specs {
		for _, p := range s.check(cfg) {
			probs = append(probs, fmt.Errorf("%s: %s: %s", owner[s.key].locate(s.key), s.key, p))
		}
	}
	if len(probs) > 0 {
		return nil, problems(probs)
	}

	from := make(map[string]string, len(owner))
	for key, l := range owner {
		from[key] = l.origin(key)
	}
	return &Loaded{Config: cfg, from: from}, nil
}

// problems is every problem found by Load. It unwraps to the individual
// errors so callers can still test for, say, a missing file.
type problems []error

func (p problems) Error() string {
	if len(p) == 1 {
		return "invalid config: " + p[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config: %d problems:", len(p))
	for _, e := range p {
		b.WriteString("\n  - ")
		b.WriteString(strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
	return b.String()
}

func (p problems) Unwrap() []error { return p }

// layer is the settings from one source, keyed by config key.
type layer struct {
	values map[string]any
	// origin says where a key's value came from, for Sources.
	origin func(key string) string
	// locate is origin made as precise as possible (a file line) for
	// error messages.
	locate func(key string) string
}

func constOrigin(s string) func(string) string { return func(string) string { return s } }

// dropUndecodable removes, and reports, values that do not decode into their
// field, so that the merge sees only usable values.
func (l layer) dropUndecodable(specs []keySpec) []error {
	var probs []error
	for _, s := range specs {
		v, ok := l.values[s.key]
		if !ok {
			continue
		}
		if err := checkValue(s.key, v); err != nil {
			probs = append(probs, fmt.Errorf("%s: %w", l.locate(s.key), err))
			delete(l.values, s.key)
		}
	}
	return probs
}

// defaultLayer derives the bottom layer from Default, so the defaults are
// written down only once.
func defaultLayer() (layer, error) {
	values := make(map[string]any)
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{TagName: "koanf", Result: &values})
	if err == nil {
		err = d.Decode(Default())
	}
	if err != nil {
		return layer{}, fmt.Errorf("encode default config: %w", err)
	}
	return layer{values: values, origin: constOrigin(originDefault), locate: constOrigin(originDefault)}, nil
}

// configPath returns the config file to read, if any, and what named it.
// An explicitly empty --config means "no file", which lets a user get away
// from a SLUICE_CONFIG set in their environment.
func configPath(fs *pflag.FlagSet, environ []string) (path, namedBy string) {
	if fs != nil {
		if f := fs.Lookup(flagConfig); f != nil && f.Changed {
			return f.Value.String(), "flag --" + flagConfig
		}
	}
	// The last assignment wins, as it does for the env provider below.
	for _, kv := range environ {
		if name, v, ok := strings.Cut(kv, "="); ok && name == envConfig {
			path, namedBy = v, "env "+envConfig
		}
	}
	return path, namedBy
}

// fileLayer reads the YAML config file at path. It parses the file into a
// yaml.Node rather than through koanf's file provider because only the node
// tree keeps line numbers, which make an unknown or bad key easy to find.
func fileLayer(path, namedBy string, specs []keySpec) (layer, []error) {
	origin := "file " + path
	lines := make(map[string]int)
	l := layer{
		values: make(map[string]any),
		origin: constOrigin(origin),
		locate: func(key string) string {
			if n := lines[key]; n > 0 {
				return fmt.Sprintf("%s line %d", origin, n)
			}
			return origin
		},
	}

	b, err := os.ReadFile(path)
	if err != nil {
		return l, []error{fmt.Errorf("read config file %q (named by %s): %w", path, namedBy, err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return l, []error{fmt.Errorf("parse config file %q: %w", path, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return l, nil
		}
		root = root.Content[0]
	}
	switch {
	case root.Kind == 0, root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		// An empty file, or one holding only comments, sets nothing.
		return l, nil
	case root.Kind != yaml.MappingNode:
		return l, []error{fmt.Errorf("parse config file %q: line %d: want a mapping of keys to values at the top level", path, root.Line)}
	}
	if err := root.Decode(&l.values); err != nil {
		return l, []error{fmt.Errorf("parse config file %q: %w", path, err)}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if kn := root.Content[i]; lines[kn.Value] == 0 {
			lines[kn.Value] = kn.Line
		}
	}

	known := make([]string, len(specs))
	for i, s := range specs {
		known[i] = s.key
	}
	var unknown []string
	for key := range l.values {
		if !slices.Contains(known, key) {
			unknown = append(unknown, key)
		}
	}
	slices.SortFunc(unknown, func(a, b string) int {
		return cmp.Or(cmp.Compare(lines[a], lines[b]), cmp.Compare(a, b))
	})
	var probs []error
	for _, key := range unknown {
		probs = append(probs, fmt.Errorf("%s: unknown key %q; known keys are %s", l.locate(key), key, strings.Join(known, ", ")))
		delete(l.values, key)
	}
	return l, probs
}

// envLayer reads SLUICE_* variables from environ. SLUICE_CONFIG is not a
// setting but names the file, so it is skipped here.
func envLayer(environ []string, specs []keySpec) (layer, []error) {
	byVar := make(map[string]keySpec, len(specs))
	known := []string{envConfig}
	for _, s := range specs {
		byVar[s.envVar()] = s
		known = append(known, s.envVar())
	}
	var unknown []string
	p := env.Provider("", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, v string) (string, any) {
			if name == envConfig {
				return "", nil
			}
			s, ok := byVar[name]
			if !ok {
				unknown = append(unknown, name)
				return "", nil
			}
			switch s.key {
			case "pipelines", "kafka_brokers":
				return s.key, splitList(v)
			case "dev_kafka", "once":
				// Left as the string if it does not parse, so the
				// decoder reports the variable and its value.
				if b, err := strconv.ParseBool(v); err == nil {
					return s.key, b
				}
			case "dev_kafka_partitions":
				if n, err := strconv.Atoi(v); err == nil {
					return s.key, n
				}
			}
			return s.key, v
		},
	})
	values, err := p.Read()
	if err != nil {
		return layer{}, []error{fmt.Errorf("read environment: %w", err)}
	}
	slices.Sort(unknown)
	unknown = slices.Compact(unknown)
	var probs []error
	for _, name := range unknown {
		probs = append(probs, fmt.Errorf("env %s: unknown variable; known variables are %s", name, strings.Join(known, ", ")))
	}
	origin := func(key string) string { return "env " + envPrefix + strings.ToUpper(key) }
	return layer{values: values, origin: origin, locate: origin}, probs
}

// splitList splits a comma-separated variable, trimming the spaces people
// put after commas. An empty variable is an empty list, which validation
// then reports, rather than a list holding one empty entry.
func splitList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return []string{}
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// flagLayer takes the flags of RegisterFlags that the user set on the
// command line; flags left at their defaults must not override the file or
// environment.
func flagLayer(fs *pflag.FlagSet, specs []keySpec) (layer, []error) {
	byFlag := make(map[string]keySpec, len(specs))
	for _, s := range specs {
		byFlag[s.flag] = s
	}
	origin := func(key string) string {
		for _, s := range specs {
			if s.key == key {
				return "flag --" + s.flag
			}
		}
		return "flag"
	}
	l := layer{values: map[string]any{}, origin: origin, locate: origin}
	if fs == nil {
		return l, nil
	}
	// With no koanf instance to consult, posflag drops unchanged flags.
	p := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		s, ok := byFlag[f.Name]
		if !ok {
			return "", nil
		}
		return s.key, posflag.FlagVal(fs, f)
	})
	values, err := p.Read()
	if err != nil {
		return l, []error{fmt.Errorf("read flags: %w", err)}
	}
	l.values = values
	return l, nil
}

// decoderConfig is shared by the per-value checks and the final decode so
// that both accept exactly the same input. Weak typing is left off: it
// would turn `data_dir: true` into "true" and hide the mistake.
func decoderConfig() *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		TagName:     "koanf",
		ErrorUnused: true,
		DecodeHook:  mapstructure.DecodeHookFuncType(decodeHook),
	}
}

// decodeHook parses duration strings and turns away inputs that would
// otherwise decode to something the user did not mean: a bare number as a
// duration would be nanoseconds, so `shutdown_timeout: 10` is refused rather
// than read as 10ns.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	durationType := reflect.TypeFor[time.Duration]()
	switch to {
	case durationType:
		if from == durationType {
			return data, nil
		}
		switch from.Kind() {
		case reflect.String:
			s := reflect.ValueOf(data).String()
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("invalid duration %q: want a number with a unit, like \"30s\" or \"2m\"", s)
			}
			return d, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			return nil, fmt.Errorf("duration %v has no unit: write it with one, like \"%vs\"", data, data)
		}
	case reflect.TypeFor[[]string]():
		if from.Kind() == reflect.String {
			s := reflect.ValueOf(data).String()
			return nil, fmt.Errorf("want a list, got the single string %q: write it as [%q]", s, s)
		}
	}
	return data, nil
}

// checkValue decodes one key's value on its own and describes the failure,
// if any, in the user's terms rather than mapstructure's.
func checkValue(key string, val any) error {
	if val == nil {
		return fmt.Errorf("%s: no value given; remove the key to use the default", key)
	}
	var scratch Config
	dc := decoderConfig()
	dc.Result = &scratch
	d, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	err = d.Decode(map[string]any{key: val})
	if err == nil {
		return nil
	}
	var de *mapstructure.DecodeError
	if !errors.As(err, &de) {
		return fmt.Errorf("%s: %w", key, err)
	}
	cause := de.Unwrap()
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(cause, &ute) {
		// mapstructure's own wording names Go types, which mean little to
		// someone editing YAML.
		msg := fmt.Sprintf("want %s, got %s", describeType(ute.Expected.Type()), describeValue(ute.Value))
		if ute.Expected.Kind() == reflect.String && isBoolOrNumber(ute.Value) {
			msg += "; quote it to use it as a string"
		}
		cause = errors.New(msg)
	}
	// The decode error's name is more precise than key for list entries,
	// e.g. pipelines[2].
	return fmt.Errorf("%s: %w", de.Name(), cause)
}

func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[string]():
		return "a string"
	case reflect.TypeFor[[]string]():
		return "a list of strings"
	case reflect.TypeFor[time.Duration]():
		return "a duration"
	}
	return t.String()
}

func describeValue(v any) string {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Bool:
		return fmt.Sprintf("the boolean %v", v)
	}
	if isBoolOrNumber(v) {
		return fmt.Sprintf("the number %v", v)
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

func isBoolOrNumber(v any) bool {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}
