package parquetout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/internal/atomicfile"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// inRun puts every message of b on the context of run r, as a bounded
// input does.
func inRun(r *runscope.Run, b service.MessageBatch) service.MessageBatch {
	ctx := runscope.With(context.Background(), r)
	for i, m := range b {
		b[i] = m.WithContext(ctx)
	}
	return b
}

// idBatch is the batch of {"id": from} to {"id": from+n-1}.
func idBatch(from, n int) service.MessageBatch {
	var lines []string
	for id := from; id < from+n; id++ {
		lines = append(lines, fmt.Sprintf(`{"id":%d}`, id))
	}
	return batchOf(lines...)
}

// tmpFiles lists the .tmp files under dir, sorted.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ms)
	return ms
}

// published lists the files under dir with a final name, sorted, without
// failing on a .tmp as finalFiles does.
func published(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ms)
	return ms
}

// TestRunTransaction: in run mode each batch is acknowledged once its rows
// are in a .tmp file, full files are sealed but keep their .tmp name, and
// at Close the run's files all appear, with every row once, if the run is
// complete, and none does, nor any .tmp, otherwise.
func TestRunTransaction(t *testing.T) {
	const batches, size = 5, 10
	cases := []struct {
		name    string
		maxRows int
		// finish ends the run after its batches were written and each
		// acknowledged with nil, as the input would.
		finish    func(r *runscope.Run)
		wantFiles int // 0: the run is not published
	}{
		{"complete, one file", 1000, func(r *runscope.Run) { r.Ended() }, 1},
		{"complete, rotated, a batch split over two files", 15, func(r *runscope.Run) { r.Ended() }, 4},
		{"complete, rotated, no file open at close", 10, func(r *runscope.Run) { r.Ended() }, 5},
		{"never ended", 15, func(*runscope.Run) {}, 0},
		{"never ended, one file", 1000, func(*runscope.Run) {}, 0},
		{"a batch acknowledged with an error", 15, func(r *runscope.Run) {
			r.Emitted()
			r.Acked(errors.New("nacked downstream"))
			r.Ended()
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// A max_age of an hour: were a batch to wait for its file, as in
			// batch mode, it would not return.
			o := testOutput(t, fmt.Sprintf("path: '%s/r-${! counter() }.parquet'\ntransaction: run\nmax_rows: %d\nmax_age: 1h\nmax_in_flight: 1\n", dir, c.maxRows))
			r := &runscope.Run{}
			for i := range batches {
				r.Emitted()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				err := o.WriteBatch(ctx, inRun(r, idBatch(1+i*size, size)))
				cancel()
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("batch %d took %s: it waited for its file", i, d)
				}
				r.Acked(nil)
			}
			c.finish(r)
			if ms := published(t, dir); len(ms) > 0 {
				t.Fatalf("files published before Close: %v", ms)
			}
			// The full files are finished already, as .tmp: their rows are
			// off the heap and in complete files.
			tmps := tmpFiles(t, dir)
			opened := (batches*size + c.maxRows - 1) / c.maxRows
			if len(tmps) != opened {
				t.Errorf(".tmp files before Close: %v, want %d", tmps, opened)
			}
			sealed := 0
			for _, tmp := range tmps {
				if pf, err := readFile(tmp); err == nil && len(pf.rows) == c.maxRows {
					sealed++
				}
			}
			if want := batches * size / c.maxRows; sealed != want {
				t.Errorf("%d full .tmp files are complete Parquet files, want %d", sealed, want)
			}

			if err := o.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			files := finalFiles(t, dir) // fails on a .tmp left behind
			if len(files) != c.wantFiles {
				t.Fatalf("files after Close: %v, want %d", files, c.wantFiles)
			}
			if c.wantFiles > 0 {
				checkOnce(t, idsIn(t, files), batches*size)
			}
			// Close twice is harmless, and publishes nothing more.
			if err := o.Close(context.Background()); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestRunNeedsOneRun: in run mode a message with no run, or of another run
// than the earlier batches, fails its batch with an error naming the
// field, later batches fail too, and the run is not published even if it
// completes.
func TestRunNeedsOneRun(t *testing.T) {
	const noRun = "transaction: run needs a bounded input that reports the end of its run, such as csv_file; this message has none"
	// Each case has runs of its own (reset below): Close fails a complete
	// run it does not publish.
	var a, b *runscope.Run
	mixed := func() service.MessageBatch {
		m := inRun(a, idBatch(100, 2))
		m[1] = service.NewMessage([]byte(`{"id":101}`))
		return m
	}
	cases := []struct {
		name    string
		batches []func() service.MessageBatch
		wantErr []string // per batch; "" for success
		// Whether Close says a complete run is lost: once a run is known
		// and complete, though nothing of it may have been written.
		closeErr bool
	}{
		{"no run", []func() service.MessageBatch{
			func() service.MessageBatch { return idBatch(1, 3) },
		}, []string{"message 0: " + noRun}, false},
		{"no run after a run", []func() service.MessageBatch{
			func() service.MessageBatch { return inRun(a, idBatch(1, 3)) },
			func() service.MessageBatch { return idBatch(4, 3) },
			func() service.MessageBatch { return inRun(a, idBatch(7, 3)) },
		}, []string{"", noRun, "can no longer be published: message 0: " + noRun}, true},
		{"one message of the batch has none", []func() service.MessageBatch{mixed},
			[]string{"message 1: " + noRun}, true},
		{"another run", []func() service.MessageBatch{
			func() service.MessageBatch { return inRun(a, idBatch(1, 3)) },
			func() service.MessageBatch { return inRun(b, idBatch(4, 3)) },
		}, []string{"", "transaction: run: the message belongs to another run than the earlier batches"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b = &runscope.Run{}, &runscope.Run{}
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/n-${! counter() }.parquet'\ntransaction: run\n", dir))
			for i, mk := range c.batches {
				err := o.WriteBatch(context.Background(), mk())
				switch want := c.wantErr[i]; {
				case want == "" && err != nil:
					t.Fatalf("batch %d: %v", i, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Fatalf("batch %d: error %v, want %q", i, err, want)
				}
			}
			// Both runs complete: what stops the publishing is this output.
			for _, r := range []*runscope.Run{a, b} {
				r.Ended()
			}
			err := o.Close(context.Background())
			if c.closeErr {
				if err == nil || !strings.Contains(err.Error(), "the run completed but is not published") {
					t.Errorf("Close: %v, want an error saying the complete run is not published", err)
				}
				if a.Complete() {
					t.Error("the run is still complete: the supervisor would call it a success")
				}
			} else if err != nil {
				t.Errorf("Close: %v", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left: %v", ents)
			}
		})
	}
}

// TestRunPublish: at Close the files are renamed in name order, whatever
// the order they were opened in, each rename followed by an fsync of the
// directory; a failure there stops publishing, removes the files not yet
// published and names those that were; a final name taken since its file
// was opened stops the run from being published at all.
func TestRunPublish(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name      string
		failAt    string // "rename b", "syncdir b", or "appears b"
		wantSteps []string
		wantFinal []string // final names afterwards
		wantErr   string
		overwrite bool
	}{
		{"ok", "",
			[]string{"rename a", "syncdir a", "rename b", "syncdir b", "rename c", "syncdir c"},
			[]string{"a", "b", "c"}, "", false},
		{"rename fails", "rename b",
			[]string{"rename a", "syncdir a", "rename b"},
			[]string{"a"}, "1 of its 3 files were published", false},
		{"directory fsync fails", "syncdir b",
			[]string{"rename a", "syncdir a", "rename b", "syncdir b"},
			[]string{"a", "b"}, "2 of its 3 files were published", false},
		{"a final name appears meanwhile", "appears b",
			nil,
			[]string{"b"}, "b.parquet appeared while the run was written", false},
		{"a final name appears meanwhile, overwrite", "appears b",
			[]string{"rename a", "syncdir a", "rename b", "syncdir b", "rename c", "syncdir c"},
			[]string{"a", "b", "c"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/${! json(\"name\") }.parquet'\ntransaction: run\nmax_rows: 1\noverwrite: %v\n", dir, c.overwrite))
			var steps []string
			last := "" // the file last renamed
			o.rename = func(from, to string) error {
				last = strings.TrimSuffix(filepath.Base(to), ".parquet")
				steps = append(steps, "rename "+last)
				if from != to+".tmp" {
					t.Errorf("rename %s to %s", from, to)
				}
				if c.failAt == "rename "+last {
					return boom
				}
				return os.Rename(from, to)
			}
			o.syncDir = func(d string) error {
				if d != dir {
					t.Errorf("fsync of %s, want %s", d, dir)
				}
				steps = append(steps, "syncdir "+last)
				if c.failAt == "syncdir "+last {
					return boom
				}
				return atomicfile.SyncDir(d)
			}
			r := &runscope.Run{}
			// Opened in the order c, a, b.
			for _, name := range []string{"c", "a", "b"} {
				r.Emitted()
				if err := o.WriteBatch(context.Background(), inRun(r, batchOf(fmt.Sprintf(`{"name":%q}`, name)))); err != nil {
					t.Fatal(err)
				}
				r.Acked(nil)
			}
			r.Ended()
			if c.failAt == "appears b" {
				if err := os.WriteFile(filepath.Join(dir, "b.parquet"), []byte("theirs"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := o.Close(context.Background())
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Close: %v, want %q", err, c.wantErr)
			}
			if c.wantErr != "" && c.failAt != "appears b" && !errors.Is(err, boom) {
				t.Errorf("Close: %v does not wrap the cause", err)
			}
			if !slices.Equal(steps, c.wantSteps) {
				t.Errorf("steps %v, want %v", steps, c.wantSteps)
			}
			var finals []string
			for _, f := range finalFiles(t, dir) { // fails on a .tmp left behind
				finals = append(finals, strings.TrimSuffix(filepath.Base(f), ".parquet"))
			}
			if !slices.Equal(finals, c.wantFinal) {
				t.Errorf("final files %v, want %v", finals, c.wantFinal)
			}
			if c.failAt == "appears b" && !c.overwrite {
				if b, _ := os.ReadFile(filepath.Join(dir, "b.parquet")); string(b) != "theirs" {
					t.Errorf("b.parquet was replaced: %q", b)
				}
				return
			}
			for _, f := range c.wantFinal {
				got := readParquet(t, filepath.Join(dir, f+".parquet")).rows
				if len(got) != 1 || got[0]["name"] != f {
					t.Errorf("%s.parquet holds %v", f, got)
				}
			}
		})
	}
}

// TestRunFileFailure: a file of the run that cannot be finished may hold
// acknowledged rows, so the run is not published even when complete: the
// batch that filled it fails and fails the run (the supervisor stops it
// then), later batches are dropped with the run, and Close removes
// everything; a last
// file that fails at Close fails the run there, saying the complete run
// is lost.
func TestRunFileFailure(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		failSync int    // which fsync of a .tmp fails, from 1
		wantErrs []bool // per batch
	}{
		// Batch 0 fills the first file, whose fsync fails: it fails the
		// run, and the later batches, abandoned with it, are acknowledged
		// unwritten (an error would only have them retried).
		{"a full file", 1, []bool{true, false, false}},
		// The last file is finished at Close.
		{"the last file", 3, []bool{false, false, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/f-${! counter() }.parquet'\ntransaction: run\nmax_rows: 2\n", dir))
			syncs := 0
			o.syncFile = func(f *os.File) error {
				syncs++
				if syncs == c.failSync {
					return boom
				}
				return f.Sync()
			}
			r := &runscope.Run{}
			// 2, 2 and 1 rows: two full files and one open at Close.
			for i, n := range []int{2, 2, 1} {
				r.Emitted()
				err := o.WriteBatch(context.Background(), inRun(r, idBatch(1+2*i, n)))
				if (err != nil) != c.wantErrs[i] {
					t.Fatalf("batch %d: error %v, want one: %v", i, err, c.wantErrs[i])
				}
				if err != nil && !errors.Is(err, boom) {
					t.Errorf("batch %d: %v does not wrap the cause", i, err)
				}
				// As with a fallback that took the failed batch: the input
				// still sees the run complete.
				r.Acked(nil)
			}
			r.Ended()
			err := o.Close(context.Background())
			if !errors.Is(r.Failed(), boom) {
				t.Errorf("the run's failure: %v, want one wrapping %v", r.Failed(), boom)
			}
			if failedInBatch := c.wantErrs[0]; !failedInBatch && (err == nil || !strings.Contains(err.Error(), "the run completed but is not published") || !errors.Is(err, boom)) {
				t.Errorf("Close: %v, want one saying the complete run is not published, wrapping the cause", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left: %v", ents)
			}
		})
	}
}

// TestBatchModeIgnoresRun: with the default transaction a message's run
// changes nothing: its file appears before Close.
func TestBatchModeIgnoresRun(t *testing.T) {
	dir := t.TempDir()
	o := testOutput(t, fmt.Sprintf("path: '%s/b.parquet'\nmax_in_flight: 1\n", dir))
	if err := o.WriteBatch(context.Background(), inRun(&runscope.Run{}, idBatch(1, 3))); err != nil {
		t.Fatal(err)
	}
	if n := len(readParquet(t, filepath.Join(dir, "b.parquet")).rows); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

// runInput is a bounded input as csv_file is: batches of {"id": n}, every
// message on its run's context, the run ended after the last batch.
type runInput struct {
	batches, size int
	delay         time.Duration
	run           *runscope.Run
	read          int
	acked         atomic.Int64
}

func (in *runInput) Connect(context.Context) error { return nil }

func (in *runInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	if in.read == in.batches {
		in.run.Ended()
		return nil, nil, service.ErrEndOfInput
	}
	select {
	case <-time.After(in.delay):
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	b := inRun(in.run, idBatch(1+in.read*in.size, in.size))
	in.read++
	in.run.Emitted()
	return b, func(_ context.Context, err error) error {
		in.run.Acked(err)
		in.acked.Add(1)
		return nil
	}, nil
}

func (in *runInput) Close(context.Context) error { return nil }

// TestRunStream: in a stream, where Benthos closes the output once every
// batch is acknowledged, a run that reads its input to the end has all its
// files appear, none before the run completed; a stream stopped partway
// leaves no file.
func TestRunStream(t *testing.T) {
	const batches, size = 20, 25
	cases := []struct {
		name      string
		delay     time.Duration
		stopAfter int // batches acknowledged before the stream is stopped; 0: run to the end
	}{
		{"to the end", 0, 0},
		{"stopped partway", 20 * time.Millisecond, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// Set when the stream builds its input, read by the watcher.
			var inp atomic.Pointer[runInput]
			env := service.NewEnvironment()
			if err := Register(env); err != nil {
				t.Fatal(err)
			}
			err := env.RegisterBatchInput("run_input", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Resources) (service.BatchInput, error) {
				in := &runInput{batches: batches, size: size, delay: c.delay, run: &runscope.Run{}}
				inp.Store(in)
				return in, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			b := env.NewStreamBuilder()
			if err := b.SetYAML(fmt.Sprintf(`
input:
  run_input: {}
output:
  parquet:
    path: '%s/s-${! timestamp_unix_nano() }-${! uuid_v4() }.parquet'
    transaction: run
    max_rows: 70
    max_in_flight: 8
`, dir)); err != nil {
				t.Fatal(err)
			}
			if err := b.SetLoggerYAML("level: none"); err != nil {
				t.Fatal(err)
			}
			stream, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			// A file under its final name before the run is complete would be
			// a partial result on show.
			var early atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					in := inp.Load()
					if in == nil || in.run.Complete() {
						continue
					}
					if ms, _ := filepath.Glob(filepath.Join(dir, "*.parquet")); len(ms) > 0 && !in.run.Complete() {
						early.Store(fmt.Sprintf("%v published before the run completed", ms))
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if c.stopAfter == 0 {
				if err := stream.Run(ctx); err != nil {
					t.Fatalf("stream: %v", err)
				}
			} else {
				done := make(chan error, 1)
				go func() { done <- stream.Run(ctx) }()
				for inp.Load() == nil || inp.Load().acked.Load() < int64(c.stopAfter) {
					time.Sleep(5 * time.Millisecond)
				}
				if err := stream.StopWithin(10 * time.Second); err != nil {
					t.Fatalf("stop: %v", err)
				}
				<-done
				if inp.Load().run.Complete() {
					t.Fatal("the run completed before the stream was stopped")
				}
			}
			close(stop)
			wg.Wait()
			if e := early.Load(); e != nil {
				t.Error(e)
			}
			files := finalFiles(t, dir) // fails on a .tmp left behind
			if c.stopAfter > 0 {
				if len(files) > 0 {
					t.Errorf("files of a stopped run: %v", files)
				}
				return
			}
			if len(files) != 8 { // 500 rows by 70
				t.Errorf("%d files, want 8", len(files))
			}
			checkOnce(t, idsIn(t, files), batches*size)
		})
	}
}

// TestRunEmptyFrame: in run mode a frame of no rows (csv_file's for a file
// with a header alone) gives the run a file of no rows with the columns'
// schema, as pandas writes an empty DataFrame; with a later frame's rows,
// the one file holds them. Without columns there is no schema to write,
// and outside run mode a file is made for rows only: no file either way.
func TestRunEmptyFrame(t *testing.T) {
	w := frame.NewWriter()
	w.Add("id", abi.TypeInt, false)
	w.AddConst("csv_file", abi.TypeString, true).Text("empty.csv")
	empty, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, conf string
		batches    []service.MessageBatch
		want       []int // rows of each file published
	}{
		{"run, columns", "transaction: run\ncolumns: [{name: id, type: int64}]\n", []service.MessageBatch{{service.NewMessage(empty)}}, []int{0}},
		{"run, columns, rows after", "transaction: run\ncolumns: [{name: id, type: int64}]\n", []service.MessageBatch{{service.NewMessage(empty)}, idBatch(1, 3)}, []int{3}},
		{"run, no columns", "transaction: run\n", []service.MessageBatch{{service.NewMessage(empty)}}, nil},
		{"batch mode", "columns: [{name: id, type: int64}]\n", []service.MessageBatch{{service.NewMessage(empty)}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/r-${! counter() }.parquet'\nmax_in_flight: 1\n%s", dir, tc.conf))
			r := &runscope.Run{}
			for i, b := range tc.batches {
				r.Emitted()
				if err := o.WriteBatch(context.Background(), inRun(r, b)); err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				r.Acked(nil)
			}
			r.Ended()
			if err := o.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, f := range finalFiles(t, dir) {
				pf := readParquet(t, f)
				if cols := pf.schema.Fields(); len(cols) != 1 || cols[0].Name() != "id" {
					t.Errorf("%s: columns %v, want id", f, cols)
				}
				got = append(got, len(pf.rows))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("files of %v rows, want %v", got, tc.want)
			}
		})
	}
}

// runWriting is an output of conf in the midst of a run that has
// delivered batch to it.
func runWriting(t *testing.T, conf string, batch service.MessageBatch) (*output, *runscope.Run) {
	t.Helper()
	o := testOutput(t, conf)
	r := &runscope.Run{}
	r.Emitted()
	if err := o.WriteBatch(context.Background(), inRun(r, batch)); err != nil {
		t.Fatal(err)
	}
	r.Acked(nil)
	return o, r
}

// TestRunFilesKeptFromSweep: a run's files, sealed or still open, stay
// marked as a live writer's until the run is published: another output of
// the same path that connects meanwhile (a second agent, a restarted
// pipeline) leaves them, and the run publishes every row.
func TestRunFilesKeptFromSweep(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf("path: '%s/s-${! counter() }.parquet'\ntransaction: run\nmax_rows: 2\n", dir)
	o, r := runWriting(t, conf, idBatch(1, 3))
	// One file sealed (2 rows), one open, both .tmp.
	if got := tmpFiles(t, dir); len(got) != 2 {
		t.Fatalf(".tmp files %v, want 2", got)
	}
	testOutput(t, conf) // connects, and sweeps
	if got := tmpFiles(t, dir); len(got) != 2 {
		t.Fatalf("after another output connected: .tmp files %v, want both kept", got)
	}
	r.Ended()
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, idsIn(t, finalFiles(t, dir)), 3)
}

// TestOverlappingRunsOfAFixedName: a run of a fixed name (overwrite: the
// file of a job that replaces it every run) whose .tmp another run is
// still writing fails its batch saying so, and leaves that file to the
// other run, which publishes its rows whole.
func TestOverlappingRunsOfAFixedName(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf("path: '%s/sales.parquet'\ntransaction: run\noverwrite: true\n", dir)
	first, r1 := runWriting(t, conf, idBatch(1, 3))

	second := testOutput(t, conf)
	r2 := &runscope.Run{}
	r2.Emitted()
	err := second.WriteBatch(context.Background(), inRun(r2, idBatch(7, 2)))
	if err == nil || !strings.Contains(err.Error(), "sales.parquet.tmp is being written by another run of this output") {
		t.Fatalf("the second run's batch: %v", err)
	}
	r2.Acked(err)
	r2.Ended()
	if err := second.Close(context.Background()); err != nil {
		t.Logf("the second run's close: %v", err)
	}

	r1.Ended()
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, idsIn(t, finalFiles(t, dir)), 3)
}
