package diskbuffer

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/ingest"
)

// TestFullBufferThroughHTTPIngest: with the output down and the buffer
// full, `block` turns into back-pressure the HTTP client sees (503 or 504,
// never a 2xx for events that were not stored), and `drop_oldest` keeps
// answering 200 while dropping the oldest events, so that what the output
// gets after it recovers is the newest events, in order.
func TestFullBufferThroughHTTPIngest(t *testing.T) {
	for _, policy := range []string{"block", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			c := &collector{}
			c.down.Store(true)
			out := httptest.NewServer(c)
			defer out.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()

			env := service.NewEnvironment()
			if err := Register(env, Options{}); err != nil {
				t.Fatal(err)
			}
			if err := ingest.Register(env); err != nil {
				t.Fatal(err)
			}
			b := env.NewStreamBuilder()
			// Each event is ~1 KB; the buffer holds about 16 of them.
			err = b.SetYAML(fmt.Sprintf(`
input:
  http_ingest:
    address: %s
    timeout: 500ms
buffer:
  sluice_disk:
    path: %s
    max_bytes: 16384
    segment_bytes: 4096
    full_policy: %s
output:
  http_client:
    url: %s
    verb: POST
    retries: 0
    max_in_flight: 1
`, addr, t.TempDir(), policy, out.URL))
			if err != nil {
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
			defer func() { _ = stream.StopWithin(5 * time.Second); <-done }()

			pad := strings.Repeat("x", 1000)
			var stored []int
			refused := 0
			for i := 0; i < 60 && refused < 3; i++ {
				code := postEvent(t, "http://"+addr+"/v1/events", fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
				switch {
				case code/100 == 2:
					stored = append(stored, i)
				case code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
					refused++
				default:
					t.Fatalf("event %d: status %d", i, code)
				}
			}
			switch policy {
			case "block":
				if refused == 0 || len(stored) > 20 {
					t.Fatalf("block: %d events answered 2xx and %d refused; want the buffer (about 16 events) to fill and then refuse", len(stored), refused)
				}
			case "drop_oldest":
				if refused != 0 || len(stored) != 60 {
					t.Fatalf("drop_oldest: %d of 60 events answered 2xx, %d refused; want every one taken", len(stored), refused)
				}
			}

			c.down.Store(false)
			deadline := time.Now().Add(30 * time.Second)
			for {
				first, _ := c.firstDeliveries()
				if policy == "block" && len(first) >= len(stored) || policy == "drop_oldest" && len(first) > 0 && first[len(first)-1] == 59 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after recovery %d events delivered: %v", len(first), first)
				}
				time.Sleep(20 * time.Millisecond)
			}
			first, _ := c.firstDeliveries()
			for i := 1; i < len(first); i++ {
				if first[i] <= first[i-1] {
					t.Fatalf("delivered out of order: %v", first)
				}
			}
			if policy == "block" {
				// Every event answered 2xx was stored and arrives; a 504
				// (taken, outcome unknown) may arrive too.
				got := map[int]bool{}
				for _, n := range first {
					got[n] = true
				}
				for _, n := range stored {
					if !got[n] {
						t.Errorf("event %d was answered 2xx but never delivered: %v", n, first)
					}
				}
				return
			}
			if len(first) >= 60 || first[0] == 0 {
				t.Errorf("drop_oldest delivered %d events starting at %d; want the oldest dropped", len(first), first[0])
			}
			if want := 60 - first[0]; len(first) != want {
				t.Errorf("delivered %v: want the newest events, %d..59, with none missing between", first, first[0])
			}
		})
	}
}

func postEvent(t *testing.T, url, body string) int {
	t.Helper()
	for try := 0; ; try++ {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		if try > 100 {
			t.Fatalf("post: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the input starts listening with the stream
	}
}
