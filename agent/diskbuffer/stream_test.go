package diskbuffer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// collector is the output's HTTP endpoint: it fails with 503 while down,
// and records what it accepts.
type collector struct {
	down     atomic.Bool
	failures atomic.Int64
	mu       sync.Mutex
	got      []int
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if c.down.Load() {
		c.failures.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var ev struct{ N int }
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.got = append(c.got, ev.N)
	c.mu.Unlock()
}

// firstDeliveries gives the numbers received, each at its first arrival,
// and how many arrivals were repeats.
func (c *collector) firstDeliveries() (first []int, dupes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int]bool{}
	for _, n := range c.got {
		if seen[n] {
			dupes++
			continue
		}
		seen[n] = true
		first = append(first, n)
	}
	return first, dupes
}

// replaceMux lets a path be registered again, as http_server does when it
// stops (http.ServeMux panics on that).
type replaceMux struct {
	mu sync.Mutex
	h  map[string]http.HandlerFunc
}

func (m *replaceMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.mu.Lock()
	m.h[pattern] = h
	m.mu.Unlock()
}

func (m *replaceMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	h := m.h[r.URL.Path]
	m.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

// ingestStream runs input http_server → sluice_disk in dir → http_client
// to the collector, and gives the URL to post events to and a stop
// function.
func ingestStream(t *testing.T, dir, collectorURL string) (string, func(time.Duration)) {
	t.Helper()
	env := service.NewEnvironment()
	if err := Register(env, Options{}); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	mux := &replaceMux{h: map[string]http.HandlerFunc{}}
	b.SetHTTPMux(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	yaml := fmt.Sprintf(`
input:
  http_server:
    path: /ingest
buffer:
  sluice_disk:
    path: %s
output:
  http_client:
    url: %s
    verb: POST
    retries: 0
    max_in_flight: 1
`, dir, collectorURL)
	if err := b.SetYAML(yaml); err != nil {
		t.Fatal(err)
	}
	if err := b.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- stream.Run(context.Background()) }()
	var once sync.Once
	stop := func(within time.Duration) {
		once.Do(func() {
			_ = stream.StopWithin(within)
			<-done
		})
	}
	t.Cleanup(func() { stop(time.Second) })
	return srv.URL + "/ingest", stop
}

// post sends events from..to-1 one by one; each returns only once the
// buffer has stored it.
func post(t *testing.T, url string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		var resp *http.Response
		var err error
		// The input registers its endpoint when the stream starts.
		for try := 0; try < 200; try++ {
			resp, err = http.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil || resp.StatusCode != http.StatusNotFound {
				break
			}
			resp.Body.Close()
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("post %d: status %d", i, resp.StatusCode)
		}
	}
}

func waitDelivered(t *testing.T, c *collector, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		first, _ := c.firstDeliveries()
		if len(first) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered in 60s", len(first), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkDelivered(t *testing.T, c *collector, n int) {
	t.Helper()
	first, dupes := c.firstDeliveries()
	if len(first) != n {
		t.Fatalf("%d distinct events delivered, want %d", len(first), n)
	}
	for i, v := range first {
		if v != i {
			t.Fatalf("first deliveries out of order at %d: %v", i, first[max(0, i-3):min(len(first), i+3)])
		}
	}
	t.Logf("%d events delivered in order, %d repeats", n, dupes)
}

// TestOutputOutage: the input keeps being acknowledged while the output
// fails, and once it recovers everything arrives, in order.
func TestOutputOutage(t *testing.T) {
	const n = 300
	c := &collector{}
	c.down.Store(true)
	out := httptest.NewServer(c)
	defer out.Close()
	url, stop := ingestStream(t, t.TempDir(), out.URL)

	// Every post is answered (so stored) with the output down.
	post(t, url, 0, n)
	waitFor(t, func() bool { return c.failures.Load() > 0 })
	if first, _ := c.firstDeliveries(); len(first) != 0 {
		t.Fatalf("delivered %d while down", len(first))
	}
	c.down.Store(false)
	waitDelivered(t, c, n)
	stop(10 * time.Second)
	checkDelivered(t, c, n)
}

// TestStreamRestart: what a stream stored while its output was down is
// delivered by the next stream on the same directory.
func TestStreamRestart(t *testing.T) {
	const n = 100
	dir := t.TempDir()
	c := &collector{}
	c.down.Store(true)
	out := httptest.NewServer(c)
	defer out.Close()

	url, stop := ingestStream(t, dir, out.URL)
	post(t, url, 0, n)
	// The output never recovers: the stream is stopped with everything
	// still buffered.
	stop(500 * time.Millisecond)

	c.down.Store(false)
	url, stop = ingestStream(t, dir, out.URL)
	post(t, url, n, n+10)
	waitDelivered(t, c, n+10)
	stop(10 * time.Second)
	checkDelivered(t, c, n+10)
}
