package agent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluice-dev/sluice/state"
)

// State is the agent's state store.
func (a *Agent) State() *state.Store { return a.store }

// StateEntry is how `agent state get` prints one key: the plugin's bytes are
// its own format, so they are shown as base64, beside what the agent knows.
type StateEntry struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Found     bool   `json:"found"`
	LastEvent string `json:"last_event,omitempty"`
	Bytes     int    `json:"bytes"`
	Value     string `json:"value_base64,omitempty"`
}

// StateGet writes one key's state as JSON.
func (a *Agent) StateGet(w io.Writer, ns, key string) error {
	e, ok, err := a.store.Get(ns, key)
	if err != nil {
		return fmt.Errorf("state get %s/%s: %w", ns, key, err)
	}
	out := StateEntry{Namespace: ns, Key: key, Found: ok}
	if ok {
		out.Bytes = len(e.Value)
		out.Value = base64.StdEncoding.EncodeToString(e.Value)
		if e.LastEvent != 0 {
			out.LastEvent = time.Unix(0, e.LastEvent).UTC().Format(time.RFC3339Nano)
		}
	}
	return writeJSON(w, out)
}

// StateList writes one page of a namespace's keys as JSON.
func (a *Agent) StateList(w io.Writer, ns, prefix, after string, limit int) error {
	keys, next, err := a.store.Scan(ns, prefix, after, limit)
	if err != nil {
		return fmt.Errorf("state list %s: %w", ns, err)
	}
	if keys == nil {
		keys = []string{}
	}
	return writeJSON(w, struct {
		Namespace string   `json:"namespace"`
		Keys      []string `json:"keys"`
		Next      string   `json:"next,omitempty"`
	}{ns, keys, next})
}

// StateStats writes the store's counters as JSON.
func (a *Agent) StateStats(w io.Writer) error { return writeJSON(w, a.store.Stats()) }

// StateBackup writes a full backup of the store to path.
func (a *Agent) StateBackup(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("state backup: %w", err)
	}
	if err := a.store.Backup(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("state backup to %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("state backup to %q: %w", path, err)
	}
	return f.Close()
}

// StateRestore loads a backup written by StateBackup. Restore into a fresh
// data dir: where the store already holds a key, Badger keeps the newer
// version, which may not be the backup's.
func (a *Agent) StateRestore(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state restore: %w", err)
	}
	defer f.Close()
	if err := a.store.Restore(f); err != nil {
		return fmt.Errorf("state restore from %q: %w", path, err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
