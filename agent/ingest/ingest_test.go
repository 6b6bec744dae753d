package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // mapping, try, sync_response
	"github.com/redpanda-data/benthos/v4/public/service"
)

// mappingPipeline marks good events as seen and fails the bad ones, then
// takes the sync response, as a user's pipeline would.
const mappingPipeline = `
    - mapping: |
        root = if this.bad == true { throw("bad event %v".format(this.id)) } else { this.merge({"seen": true}) }
    - sync_response: {}
`

// recorder is the test's output: it keeps what reached it, and can be told
// to fail or to hold writes, to drive nacks and timeouts.
type recorder struct {
	mu      sync.Mutex
	events  []string
	indexes []string
	remotes []string
	// subjects holds each event's client certificate subject, if any.
	subjects []string
	fail     error
	hold     chan struct{} // when set, writes wait for it to close
}

func (r *recorder) Connect(context.Context) error { return nil }
func (r *recorder) Close(context.Context) error   { return nil }

func (r *recorder) WriteBatch(ctx context.Context, b service.MessageBatch) error {
	r.mu.Lock()
	fail, hold := r.fail, r.hold
	r.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range b {
		body, err := m.AsBytes()
		if err != nil {
			return err
		}
		idx, _ := m.MetaGetMut(MetaIndex)
		remote, _ := m.MetaGet(MetaRemoteAddr)
		subject, _ := m.MetaGet(MetaClientSubject)
		r.events = append(r.events, string(body))
		r.indexes = append(r.indexes, fmt.Sprint(idx))
		r.remotes = append(r.remotes, remote)
		r.subjects = append(r.subjects, subject)
	}
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) set(fail error, hold chan struct{}) {
	r.mu.Lock()
	r.fail, r.hold = fail, hold
	r.mu.Unlock()
}

// start runs a stream whose input is http_ingest with the extra fields
// (a YAML flow-map fragment, e.g. ", sync_response: true") and the given
// processors, into a recorder, and returns the events URL and the recorder.
func start(t testing.TB, fields, processors string) (string, *recorder) {
	t.Helper()
	env := service.NewEnvironment()
	addrs := make(chan net.Addr, 1)
	if err := register(env, func(a net.Addr) {
		select {
		case addrs <- a:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if err := env.RegisterBatchOutput("capture", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		return rec, service.BatchPolicy{}, 1, nil
	}); err != nil {
		t.Fatal(err)
	}
	if processors == "" {
		processors = "    []\n"
	}
	sb := env.NewStreamBuilder()
	conf := "input:\n  http_ingest: {address: \"127.0.0.1:0\"" + fields + "}\n" +
		"pipeline:\n  processors:\n" + processors +
		"output:\n  capture: {}\n"
	if err := sb.SetYAML(conf); err != nil {
		t.Fatalf("config:\n%s\n%v", conf, err)
	}
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- stream.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := stream.Stop(ctx); err != nil {
			t.Errorf("stopping the stream: %v", err)
		}
		<-ran
	})
	select {
	case a := <-addrs:
		return "http://" + a.String() + "/v1/events", rec
	case err := <-ran:
		t.Fatalf("stream ended before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the input did not start listening")
	}
	return "", nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

func post(t testing.TB, url, body string, header ...string) response {
	t.Helper()
	return do(t, http.MethodPost, url, body, header...)
}

// match reports whether the JSON got has the structure of want, where a
// string in want starting with "~" matches any string containing the rest
// (error texts are Benthos' to word).
func match(got []byte, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return matchValue(g, w)
}

func matchValue(g, w any) bool {
	switch w := w.(type) {
	case string:
		gs, ok := g.(string)
		if rest, sub := strings.CutPrefix(w, "~"); sub {
			return ok && strings.Contains(gs, rest)
		}
		return ok && gs == w
	case []any:
		ga, ok := g.([]any)
		if !ok || len(ga) != len(w) {
			return false
		}
		for i := range w {
			if !matchValue(ga[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		gm, ok := g.(map[string]any)
		if !ok || len(gm) != len(w) {
			return false
		}
		for k, wv := range w {
			if gv, ok := gm[k]; !ok || !matchValue(gv, wv) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(g, w)
	}
}

// TestSyncResponse: each body shape is answered in its own shape with the
// events as the pipeline left them, failed events carrying their error
// and their original bytes; a single failed object is a 422.
func TestSyncResponse(t *testing.T) {
	url, rec := start(t, ", sync_response: true", mappingPipeline)
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"object", `{"id":1}`, 200, `{"id":1,"seen":true}`},
		{"pretty object", "\n{\n  \"id\": 1\n}\n", 200, `{"id":1,"seen":true}`},
		{"array", ` [{"id":1}, {"id":2} ,{"id":3}] `, 200, `[{"id":1,"seen":true},{"id":2,"seen":true},{"id":3,"seen":true}]`},
		{"ndjson with blank line", "{\"id\":1}\n\n{\"id\":2}\r\n{\"id\":3}\n", 200, `[{"id":1,"seen":true},{"id":2,"seen":true},{"id":3,"seen":true}]`},
		// Scalars are events too; this mapping cannot merge into them.
		{"ndjson of scalars", "1\n\"two\"\n", 200, `[{"error":"~expected object","event":1},{"error":"~expected object","event":"two"}]`},
		{"bad event in array", `[{"id":1},{"id":2,"bad":true},{"id":3}]`, 200, `[{"id":1,"seen":true},{"error":"~bad event 2","event":{"id":2,"bad":true}},{"id":3,"seen":true}]`},
		{"bad single object", `{"id":7,"bad":true}`, 422, `{"error":"~bad event 7","event":{"id":7,"bad":true}}`},
		{"empty array", `[]`, 200, `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := post(t, url, tc.body)
			if res.status != tc.status || !match(res.body, tc.want) {
				t.Errorf("got %d %s, want %d %s", res.status, res.body, tc.status, tc.want)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// Failed events are still delivered: the pipeline decides what to do
	// with them, the input only reports them.
	if n := len(rec.got()); n != 1+1+3+3+2+3+1 {
		t.Errorf("the output got %d events", n)
	}
}

// TestSyncResponseErrorInsideTry: the error flag a failed step sets inside
// `try` survives into the sync response store, and the steps after the
// failure are skipped for that event only.
func TestSyncResponseErrorInsideTry(t *testing.T) {
	url, _ := start(t, ", sync_response: true", `
    - try:
        - mapping: 'root = if this.bad == true { throw("bad event %v".format(this.id)) } else { this }'
        - mapping: 'root = this.merge({"seen": true})'
    - sync_response: {}
`)
	res := post(t, url, `[{"id":1},{"id":2,"bad":true}]`)
	if want := `[{"id":1,"seen":true},{"error":"~bad event 2","event":{"id":2,"bad":true}}]`; res.status != 200 || !match(res.body, want) {
		t.Errorf("got %d %s, want 200 %s", res.status, res.body, want)
	}
}

// TestSyncResponseNotJSON: an event the pipeline turned into something
// other than JSON is answered as a JSON string.
func TestSyncResponseNotJSON(t *testing.T) {
	url, _ := start(t, ", sync_response: true", `
    - mapping: 'root = "id-%v".format(this.id)'
    - sync_response: {}
`)
	res := post(t, url, `[{"id":1},{"id":2}]`)
	if want := `["id-1","id-2"]`; res.status != 200 || !match(res.body, want) {
		t.Errorf("got %d %s, want 200 %s", res.status, res.body, want)
	}
}

// TestSyncResponseMissingProcessor: without a sync_response processor the
// events are delivered but there is nothing to answer with; the user is
// told what to add.
func TestSyncResponseMissingProcessor(t *testing.T) {
	url, rec := start(t, ", sync_response: true", "    - mapping: 'root = this'\n")
	res := post(t, url, `{"id":1}`)
	if res.status != 500 || !match(res.body, `{"error":"~sync_response: {}"}`) {
		t.Errorf("got %d %s, want 500 naming the sync_response processor", res.status, res.body)
	}
	if n := len(rec.got()); n != 1 {
		t.Errorf("the output got %d events, want 1", n)
	}
}

// TestParseBody: the body's shape decides the events and the response
// shape, and events keep their bytes as sent.
func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		body   string
		shape  shape
		events []string
	}{
		{` {"b": 1, "a": [1.50]} `, shapeObject, []string{`{"b": 1, "a": [1.50]}`}},
		{"{\"a\":1}\n", shapeObject, []string{`{"a":1}`}},
		{"[ {\"a\" : 1} ,\n 2, \"x\" ]", shapeList, []string{`{"a" : 1}`, `2`, `"x"`}},
		{"[]", shapeList, nil},
		{"{\"a\":1}\n{\"a\":2}", shapeList, []string{`{"a":1}`, `{"a":2}`}},
		{"[1]\n[2]\n", shapeList, []string{`[1]`, `[2]`}},
		{"42", shapeList, []string{`42`}},
	} {
		events, sh, err := parseBody([]byte(tc.body))
		var got []string
		for _, e := range events {
			got = append(got, string(e))
		}
		if err != nil || sh != tc.shape || !reflect.DeepEqual(got, tc.events) {
			t.Errorf("%q: %q shape %d, %v; want %q shape %d", tc.body, got, sh, err, tc.events, tc.shape)
		}
	}
}

// TestRejected: requests that are not well-formed event posts are refused
// with a JSON error saying what and where, and nothing reaches the output.
func TestRejected(t *testing.T) {
	url, rec := start(t, ", sync_response: true, max_body_bytes: 100", mappingPipeline)
	other := strings.TrimSuffix(url, "/v1/events") + "/v1/other"
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
		want                    string
	}{
		{"empty", "POST", url, "", 400, "empty"},
		{"blank", "POST", url, " \n\t\n", 400, "empty"},
		{"ndjson line 2", "POST", url, "{\"id\":1}\n{\"id\":2\n{\"id\":3}", 400, "line 2"},
		{"ndjson line 3 after blank", "POST", url, "{\"id\":1}\n\n{\"id\":}", 400, "line 3"},
		{"array element 1", "POST", url, `[{"id":1},{"id":},{"id":3}]`, 400, "element 1"},
		{"array trailing comma", "POST", url, `[{"id":1},]`, 400, "element 1"},
		{"array unclosed", "POST", url, `[{"id":1}`, 400, "after array element 0 at line 1, column 9"},
		{"broken pretty object", "POST", url, "{\n  \"id\": 1,\n  \"x\": nope\n}", 400, "line 3"},
		{"not json", "POST", url, "hello", 400, "invalid JSON at line 1"},
		{"too large", "POST", url, `[` + strings.Repeat(`{"id":1},`, 20) + `{"id":1}]`, 413, "max_body_bytes"},
		{"get", "GET", url, "", 405, "POST"},
		{"wrong path", "POST", other, `{"id":1}`, 404, "/v1/events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, tc.method, tc.url, tc.body)
			var e struct{ Error string }
			if res.status != tc.status || json.Unmarshal(res.body, &e) != nil || !strings.Contains(e.Error, tc.want) {
				t.Errorf("got %d %s, want %d and an error containing %q", res.status, res.body, tc.status, tc.want)
			}
			if tc.status == 405 && res.header.Get("Allow") != "POST" {
				t.Errorf("Allow: %q", res.header.Get("Allow"))
			}
		})
	}
	if got := rec.got(); len(got) != 0 {
		t.Errorf("rejected requests reached the output: %q", got)
	}
}

// TestToken: with a token set, only requests bearing it get through.
func TestToken(t *testing.T) {
	url, rec := start(t, ", token: s3cret", "")
	for _, tc := range []struct {
		name   string
		header []string
		status int
	}{
		{"missing", nil, 401},
		{"wrong", []string{"Authorization", "Bearer nope"}, 401},
		{"not bearer", []string{"Authorization", "Basic s3cret"}, 401},
		{"right", []string{"Authorization", "Bearer s3cret"}, 202},
		{"scheme case", []string{"Authorization", "bearer s3cret"}, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := post(t, url, `{"id":1}`, tc.header...)
			if res.status != tc.status {
				t.Errorf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			if tc.status == 401 && res.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate: %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
	if n := len(rec.got()); n != 2 {
		t.Errorf("the output got %d events, want 2", n)
	}
}

// TestAsync: without sync_response a request is answered with its count
// once the output has the events, which arrive byte for byte as sent,
// numbered within their request.
func TestAsync(t *testing.T) {
	url, rec := start(t, "", "")
	for _, tc := range []struct {
		body string
		want string
	}{
		{`[{"id": 1,  "x":"<a&b>"}, {"id":2}, 3]`, `{"accepted":3}`},
		{"{\"id\":4}\n{\"id\": 5.0}\n", `{"accepted":2}`},
		{` {"id":6} `, `{"accepted":1}`},
	} {
		res := post(t, url, tc.body, "Content-Type", "application/x-ndjson")
		if res.status != 202 || !match(res.body, tc.want) {
			t.Errorf("%s: got %d %s, want 202 %s", tc.body, res.status, res.body, tc.want)
		}
	}
	want := []string{`{"id": 1,  "x":"<a&b>"}`, `{"id":2}`, `3`, `{"id":4}`, `{"id": 5.0}`, `{"id":6}`}
	if got := rec.got(); !reflect.DeepEqual(got, want) {
		t.Errorf("the output got %q, want %q", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []string{"0", "1", "2", "0", "1", "0"}; !reflect.DeepEqual(rec.indexes, want) {
		t.Errorf("%s: %q, want %q", MetaIndex, rec.indexes, want)
	}
	for _, r := range rec.remotes {
		if !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("%s: %q", MetaRemoteAddr, r)
		}
	}
}

// TestNack: an output's failure goes back to the client as a 503 to
// retry (the input does not retry nacks itself), and the input carries on.
func TestNack(t *testing.T) {
	for _, fields := range []string{"", ", sync_response: true"} {
		t.Run(strings.TrimPrefix(fields, ", "), func(t *testing.T) {
			url, rec := start(t, fields, "    - sync_response: {}\n")
			rec.set(errors.New("disk on fire"), nil)
			res := post(t, url, `[{"id":1},{"id":2}]`)
			if res.status != 503 || !match(res.body, `{"error":"~disk on fire"}`) {
				t.Errorf("got %d %s, want 503 with the output's error", res.status, res.body)
			}
			rec.set(nil, nil)
			if res := post(t, url, `[{"id":1},{"id":2}]`); res.status/100 != 2 {
				t.Errorf("after the output recovered: %d %s", res.status, res.body)
			}
			if n := len(rec.got()); n != 2 {
				t.Errorf("the output got %d events, want 2", n)
			}
		})
	}
}

// TestTimeout: a batch the pipeline took but has not acknowledged within
// the timeout is answered 504, saying the events may still be delivered;
// a late ack does not disturb later requests.
func TestTimeout(t *testing.T) {
	url, rec := start(t, ", timeout: 200ms", "")
	hold := make(chan struct{})
	rec.set(nil, hold)
	res := post(t, url, `{"id":1}`)
	if res.status != 504 || !match(res.body, `{"error":"~may still be delivered"}`) {
		t.Errorf("got %d %s, want 504", res.status, res.body)
	}
	close(hold)
	rec.set(nil, nil)
	if res := post(t, url, `{"id":2}`); res.status != 202 {
		t.Errorf("after the output caught up: %d %s", res.status, res.body)
	}
	if got, want := rec.got(), []string{`{"id":1}`, `{"id":2}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("the output got %q, want %q", got, want)
	}
}

// newTestInput builds the input outside a stream, to drive ReadBatch and
// Close by hand.
func newTestInput(t *testing.T, conf string) *input {
	t.Helper()
	parsed, err := ConfigSpec().ParseYAML(conf, service.NewEnvironment())
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInput(parsed, service.MockResources().Logger())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestNotTaken: a request the pipeline never reads is answered 503 with
// "nothing was ingested", as retrying it is safe.
func TestNotTaken(t *testing.T) {
	in := newTestInput(t, "{address: 127.0.0.1:0, timeout: 100ms}")
	if err := in.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	res := post(t, "http://"+in.ln.Addr().String()+"/v1/events", `{"id":1}`)
	if res.status != 503 || !match(res.body, `{"error":"~nothing was ingested"}`) {
		t.Errorf("got %d %s, want 503", res.status, res.body)
	}
}

// TestClose: a request whose batch was read but never acknowledged is
// answered 503 when the input closes, and the server stops.
func TestClose(t *testing.T) {
	in := newTestInput(t, "{address: 127.0.0.1:0, timeout: 1m}")
	if err := in.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := "http://" + in.ln.Addr().String() + "/v1/events"
	// The request is made by hand: t.Fatal may not be called off the test
	// goroutine.
	answered := make(chan response, 1)
	go func() {
		res, err := http.Post(url, "application/json", strings.NewReader(`{"id":1}`))
		if err != nil {
			answered <- response{body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answered <- response{res.StatusCode, res.Header, b}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch, _, err := in.ReadBatch(ctx)
	if err != nil || len(batch) != 1 {
		t.Fatalf("ReadBatch: %d messages, %v", len(batch), err)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	res := <-answered
	if res.status != 503 || !match(res.body, `{"error":"~shut down"}`) {
		t.Errorf("got %d %s, want 503", res.status, res.body)
	}
	if _, err := http.Post(url, "application/json", strings.NewReader(`{}`)); err == nil {
		t.Error("the server still answers after Close")
	}
	if _, _, err := in.ReadBatch(context.Background()); !errors.Is(err, service.ErrEndOfInput) {
		t.Errorf("ReadBatch after Close: %v", err)
	}
}

// TestAddressInUse: Connect names the address it could not listen on.
func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	in := newTestInput(t, "{address: "+strconv.Quote(ln.Addr().String())+"}")
	err = in.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Connect on a taken port: %v, want an error naming %s", err, ln.Addr())
	}
	_ = in.Close(context.Background())
}

// TestConfigErrors: nonsensical settings are refused when the stream is
// built, not on the first request.
func TestConfigErrors(t *testing.T) {
	for _, conf := range []string{"{path: events}", "{timeout: 0s}", "{max_body_bytes: 0}"} {
		parsed, err := ConfigSpec().ParseYAML(conf, service.NewEnvironment())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newInput(parsed, service.MockResources().Logger()); err == nil {
			t.Errorf("%s: accepted", conf)
		}
	}
}

// BenchmarkIngestSync measures a sync-response round trip through a
// mapping, for single events posted one after another and for batches of
// 100, in events per second.
func BenchmarkIngestSync(b *testing.B) {
	url, _ := start(b, ", sync_response: true", mappingPipeline)
	var batch bytes.Buffer
	batch.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `{"id":%d,"user":"u%d","amount":%d.5}`, i, i%7, i)
	}
	batch.WriteByte(']')
	for _, bc := range []struct {
		name   string
		body   string
		events int
	}{
		{"single", `{"id":1,"user":"u1","amount":1.5}`, 1},
		{"batch100", batch.String(), 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				res := post(b, url, bc.body)
				if res.status != 200 {
					b.Fatalf("%d %s", res.status, res.body)
				}
			}
			b.ReportMetric(float64(b.N*bc.events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
