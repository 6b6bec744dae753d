package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestPublish(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "out.csv")
	tmp := final + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("a,b\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Fatalf("the final name exists before Publish: %v", err)
	}
	if err := Publish(f, tmp, final); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(final); err != nil || string(b) != "a,b\n" {
		t.Errorf("published file: %q, %v", b, err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the temporary name is still there: %v", err)
	}
	if err := Publish(f, tmp, final); err == nil {
		t.Error("publishing a closed file succeeded")
	}
}

// TestLock: a writer's lock is held against every other open, in this
// process too, until its file is closed; a missing file is ErrNotExist.
func TestLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	path := filepath.Join(t.TempDir(), "out.csv.tmp")
	if _, err := Lock(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := Lock(path)
	if err != nil || first == nil {
		t.Fatalf("first lock: %v", err)
	}
	if _, err := Lock(path); !errors.Is(err, ErrHeld) {
		t.Errorf("a second lock while the first is held: %v", err)
	}
	first.Close()
	again, err := Lock(path)
	if err != nil || again == nil {
		t.Fatalf("a lock after the first was released: %v", err)
	}
	again.Close()
}
