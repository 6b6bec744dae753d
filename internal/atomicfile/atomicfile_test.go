package atomicfile

import (
	"os"
	"path/filepath"
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
