package csvout

import (
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
)

const columnsYAML = `
columns:
  - {name: line, value: '${! meta("line") }'}
  - {name: reason, value: '${! error() }'}
  - {name: row, value: '${! content() }'}
`

func newTest(t *testing.T, path, extra string) *output {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML("path: "+path+"\n"+columnsYAML+extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o
}

// rejects makes messages like the rejects of a CSV run: tricky bytes
// (commas, quotes, a newline) and an error each.
func rejects(ctx context.Context, lines ...string) service.MessageBatch {
	var b service.MessageBatch
	for _, l := range lines {
		m := service.NewMessage([]byte(`a,"b"` + "\n" + l)).WithContext(ctx)
		m.MetaSetMut("line", l)
		m.SetError(&reasonErr{"bad row " + l + ", see \"docs\""})
		b = append(b, m)
	}
	return b
}

type reasonErr struct{ s string }

func (e *reasonErr) Error() string { return e.s }

func readBack(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func lineCol(recs [][]string) string {
	var out []string
	for _, r := range recs {
		out = append(out, r[0])
	}
	return strings.Join(out, " ")
}

func TestBatchModeAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "rejects.csv")
	ctx := context.Background()
	for _, lines := range [][]string{{"1", "2"}, {"3"}} {
		o := newTest(t, path, "")
		if err := o.WriteBatch(ctx, rejects(ctx, lines...)); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	recs := readBack(t, path)
	if got := lineCol(recs); got != "line 1 2 3" {
		t.Errorf("lines %q, want the header once and every row appended", got)
	}
	if recs[1][1] != `bad row 1, see "docs"` || recs[1][2] != "a,\"b\"\n1" {
		t.Errorf("row read back as %q: quoting lost something", recs[1])
	}
}

// newInStream is a connected run-mode output to path, in a stream whose
// run (as a csv_file input makes it) it returns.
func newInStream(t *testing.T, path string) (*output, *runscope.Run) {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML("path: "+path+"\n"+columnsYAML+"transaction: run\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	res := service.MockResources()
	r := runscope.ForStream(res)
	o, err := newOutput(conf, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o, r
}

// TestRunModeNewFile: a run into a file that does not exist yet creates
// nothing, not even the file's directory, unless it completes; a complete
// run with no rows publishes the header alone.
func TestRunModeNewFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		finish  func(*runscope.Run)
		deliver bool
		want    string // the published file's lines, or "" for none
	}{
		{"failed before a row", func(r *runscope.Run) { r.Fail(errors.New("no input")) }, false, ""},
		{"stopped before a row", func(*runscope.Run) {}, false, ""},
		{"stopped after a row", func(r *runscope.Run) { r.Acked(nil) }, true, ""},
		{"complete, no rows", func(r *runscope.Run) { r.Ended() }, false, "line"},
		{"complete", func(r *runscope.Run) { r.Acked(nil); r.Ended() }, true, "line 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			path := filepath.Join(dir, "rejects.csv")
			o, r := newInStream(t, path)
			ctx := context.Background()
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Connect created %s (%v)", dir, err)
			}
			if tc.deliver {
				r.Emitted()
				rctx := runscope.With(ctx, r)
				if err := o.WriteBatch(ctx, rejects(rctx, "7")); err != nil {
					t.Fatal(err)
				}
			}
			tc.finish(r)
			if err := o.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if entries, err := os.ReadDir(dir); tc.deliver && (err != nil || len(entries) != 0) {
					t.Errorf("after a run that wrote a row and failed, %s holds %d entries (%v), want none", dir, len(entries), err)
				} else if !tc.deliver && !os.IsNotExist(err) {
					t.Errorf("a run that failed before a row left %s (%v)", dir, err)
				}
				return
			}
			if got := lineCol(readBack(t, path)); got != tc.want {
				t.Errorf("published %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFailedRunRemovesACrashedRunsTmp: the .tmp a killed run left is
// removed by the next run that fails, even before its first row, as it
// is replaced by one that writes.
func TestFailedRunRemovesACrashedRunsTmp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejects.csv")
	if err := os.WriteFile(path+".tmp", []byte("line,reason,row\nhalf"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, r := newInStream(t, path)
	r.Fail(errors.New("no input"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is there after a failed run (%v)", p, err)
		}
	}
}

// TestOverlappingRuns: a run that finds the .tmp of another run still
// being written (its lock held: another agent, or a run cron started
// while the last one wrote) fails its write naming the file, and neither
// truncates nor, when it ends, removes it; the other run publishes its
// rows whole.
func TestOverlappingRuns(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: overlapping runs are not told apart")
	}
	path := filepath.Join(t.TempDir(), "rejects.csv")
	ctx := context.Background()
	first, r1 := newInStream(t, path)
	r1.Emitted()
	if err := first.WriteBatch(ctx, rejects(runscope.With(ctx, r1), "1", "2")); err != nil {
		t.Fatal(err)
	}

	second, r2 := newInStream(t, path)
	r2.Emitted()
	err := second.WriteBatch(ctx, rejects(runscope.With(ctx, r2), "9"))
	if err == nil || !strings.Contains(err.Error(), "rejects.csv.tmp is being written by another run of this output") {
		t.Fatalf("the second run's write: %v", err)
	}
	r2.Acked(err)
	r2.Ended()
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); err != nil {
		t.Fatalf("the first run's .tmp is gone after the second run ended: %v", err)
	}

	r1.Acked(nil)
	r1.Ended()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lineCol(readBack(t, path)); got != "line 1 2" {
		t.Errorf("published %q, want the first run's rows", got)
	}
}

func TestRunMode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		finish   func(*runscope.Run)
		deliver  bool // whether the run's batch reaches the output
		wantRows string
	}{
		{"complete run replaces the file", func(r *runscope.Run) { r.Acked(nil); r.Ended() }, true, "line 7 8"},
		{"complete run with no rows leaves a header", func(r *runscope.Run) { r.Ended() }, false, "line"},
		{"stopped run leaves the file as it was", func(r *runscope.Run) { r.Acked(nil) }, true, "line old"},
		{"failed batch leaves the file as it was", func(r *runscope.Run) { r.Acked(context.Canceled); r.Ended() }, true, "line old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rejects.csv")
			if err := os.WriteFile(path, []byte("line,reason,row\nold,x,y\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			o := newTest(t, path, "transaction: run\n")
			r := &runscope.Run{}
			ctx := runscope.With(context.Background(), r)
			if tc.deliver {
				r.Emitted()
				if err := o.WriteBatch(ctx, rejects(ctx, "7", "8")); err != nil {
					t.Fatal(err)
				}
				if got := lineCol(readBack(t, path)); got != "line old" {
					t.Errorf("before Close the file reads %q, want the previous run's", got)
				}
			}
			tc.finish(r)
			if err := o.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := lineCol(readBack(t, path)); got != tc.wantRows {
				t.Errorf("after Close: %q, want %q", got, tc.wantRows)
			}
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("a .tmp is left: %v", err)
			}
		})
	}

	o := newTest(t, filepath.Join(t.TempDir(), "r.csv"), "transaction: run\n")
	ctx := context.Background()
	if err := o.WriteBatch(ctx, rejects(ctx, "1")); err == nil || !strings.Contains(err.Error(), "run needs a bounded input") {
		t.Errorf("a message from no run: %v", err)
	}
}
