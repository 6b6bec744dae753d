package grpcplugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// A plugin's output reaches the agent's log by two paths, and both end in a
// lineLog, so every line is logged once, tagged with the step:
//
//   - the process's real standard error (fd 2: panics, a Go plugin's `log`
//     package, any plugin in another language) is read by go-plugin, which
//     copies it to ClientConfig.Stderr;
//   - what a Go plugin writes to os.Stdout or os.Stderr after serving is
//     streamed by go-plugin over gRPC to ClientConfig.SyncStdout and
//     SyncStderr.
//
// go-plugin would also log fd 2's lines through ClientConfig.Logger, at
// debug level for plain lines, which hides them at the agent's default
// level; hclogAdapter turns that copy off (see Named).

// lineLog logs each line written to it. A line in go-plugin's JSON log shape
// ({"@level": ..., "@message": ...}, what hclog and native.Logger write)
// keeps its level and attributes; a plain line is logged at info, and from a
// Go panic or fatal error on, at error, so a crash's stack is visible.
type lineLog struct {
	log *service.Logger
	// keepHead keeps the first lines, for the error of a plugin that
	// fails to start.
	keepHead bool

	mu      sync.Mutex
	partial []byte
	inPanic bool
	first   []string
	firstN  int
}

// maxHead bounds the stderr quoted in a start error.
const maxHead = 2 << 10

// head returns the first lines written, joined, for an error message.
func (w *lineLog) head() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.first, " / ")
}

// maxLine bounds what a line without a newline may hold before it is
// logged as it is, so a plugin cannot grow the agent's memory.
const maxLine = 64 << 10

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxLine {
				w.emit(w.partial)
				w.partial = w.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.emit(line)
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineLog) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if w.keepHead && w.firstN < maxHead {
		h := string(bytes.TrimSpace(line))
		if len(h) > maxHead-w.firstN {
			h = h[:maxHead-w.firstN] + "..."
		}
		w.first = append(w.first, h)
		w.firstN += len(h)
	}
	if line[0] == '{' {
		var entry map[string]any
		if json.Unmarshal(line, &entry) == nil {
			if msg, ok := entry["@message"].(string); ok {
				lvl, _ := entry["@level"].(string)
				kv := make([]any, 0, 2*len(entry))
				for k, v := range entry {
					if !strings.HasPrefix(k, "@") {
						kv = append(kv, k, fmt.Sprint(v))
					}
				}
				logAt(w.log.With(kv...), hclog.LevelFromString(lvl), msg)
				return
			}
		}
	}
	s := string(line)
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		w.inPanic = true
	}
	if w.inPanic {
		w.log.Error(s)
		return
	}
	w.log.Info(s)
}

func logAt(l *service.Logger, level hclog.Level, msg string) {
	switch level {
	case hclog.Trace:
		l.Trace(msg)
	case hclog.Debug:
		l.Debug(msg)
	case hclog.Warn:
		l.Warn(msg)
	case hclog.Error:
		l.Error(msg)
	default:
		l.Info(msg)
	}
}

// hclogAdapter is go-plugin's logger, writing to the step's Benthos logger.
// go-plugin logs its own lifecycle through it ("starting plugin", "plugin
// process exited", "plugin failed to exit gracefully"). Embedding a null
// logger supplies the rest of hclog.Logger, which go-plugin does not use.
type hclogAdapter struct {
	hclog.Logger
	log *service.Logger
	off bool
}

func newHclog(l *service.Logger) hclog.Logger {
	return &hclogAdapter{Logger: hclog.NewNullLogger(), log: l}
}

// Named is what go-plugin's copy of the plugin's stderr and its stdio
// client log through. It returns a logger that is off: those lines reach
// the log through lineLog instead, with their own levels (logging them
// here too would log each twice, plain ones at debug).
func (a *hclogAdapter) Named(string) hclog.Logger {
	return &hclogAdapter{Logger: a.Logger, log: a.log, off: true}
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger { return a.Named(name) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{Logger: a.Logger, log: a.log.With(stringArgs(args)...), off: a.off}
}

func (a *hclogAdapter) GetLevel() hclog.Level {
	if a.off {
		return hclog.Off
	}
	return hclog.Trace
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if a.off {
		return
	}
	l := a.log
	if len(args) > 0 {
		l = l.With(stringArgs(args)...)
	}
	// go-plugin's debug and trace lines describe normal starts and stops.
	if level < hclog.Info {
		level = hclog.Debug
	}
	logAt(l, level, msg)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return !a.off }
func (a *hclogAdapter) IsDebug() bool                 { return !a.off }
func (a *hclogAdapter) IsInfo() bool                  { return !a.off }
func (a *hclogAdapter) IsWarn() bool                  { return !a.off }
func (a *hclogAdapter) IsError() bool                 { return !a.off }

// stringArgs renders hclog's key-value arguments as strings for Benthos'
// structured logger; an odd trailing value gets a placeholder key.
func stringArgs(args []any) []any {
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		k := fmt.Sprint(args[i])
		if i+1 == len(args) {
			out = append(out, "extra", k)
			break
		}
		out = append(out, k, fmt.Sprint(args[i+1]))
	}
	return out
}
