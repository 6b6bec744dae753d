package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/sluice-dev/sluice/agent/httpapi"
	"github.com/sluice-dev/sluice/state"
)

// State is the agent's state store.
func (a *Agent) State() *state.Store { return a.store }

// StateGet writes one key's state as JSON, in the HTTP API's shape.
func (a *Agent) StateGet(w io.Writer, ns, key string) error {
	e, ok, err := a.store.Get(ns, key)
	if err != nil {
		return fmt.Errorf("state get %s/%s: %w", ns, key, err)
	}
	return writeJSON(w, httpapi.View(ns, key, e, ok))
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
	return writeJSON(w, httpapi.Page{Namespace: ns, Keys: keys, Next: next})
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
