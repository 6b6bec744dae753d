package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/agent/httpapi"
	"github.com/sluice-dev/sluice/state"
)

// BenchmarkLookupUnderWrites measures GET /v1/state/{ns}/{key} latency over
// loopback HTTP while a writer commits batches of 1024 updates (128-byte
// values, sync writes) to the same namespace as fast as it can, the load a
// keyed pipeline puts on the store. It reports p50 and p99.
func BenchmarkLookupUnderWrites(b *testing.B) {
	st, err := state.Open(context.Background(), state.Options{Dir: b.TempDir(), SyncWrites: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const users = 10_000
	ns := state.Namespace{Name: "tallies"}
	val := make([]byte, 128)
	write := func(round int) error {
		writes := make([]state.Write, 1024)
		for i := range writes {
			writes[i] = state.Write{Key: []byte(fmt.Sprintf("user-%d", (round*1024+i)%users)), Value: val, LastEvent: int64(round)}
		}
		return st.Commit(context.Background(), ns, writes, nil)
	}
	for r := 0; r < users/1024+1; r++ {
		if err := write(r); err != nil {
			b.Fatal(err)
		}
	}
	const token = "bench-token-0123456789"
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: st, Token: token, Ready: func() bool { return true }, Metrics: http.NotFoundHandler()}))
	defer srv.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := 0; ; r++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := write(r); err != nil {
				b.Error(err)
				return
			}
		}
	}()

	client := srv.Client()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/state/tallies/user-%d", srv.URL, (i*7919)%users), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
