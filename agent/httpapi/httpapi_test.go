package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/agent/httpapi"
	"github.com/sluice-dev/sluice/state"
)

const token = "0123456789abcdef-test"

func setup(t *testing.T, tok string) (*httptest.Server, *state.Store) {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var writes []state.Write
	for i := 0; i < 5; i++ {
		writes = append(writes, state.Write{Key: []byte(fmt.Sprintf("user-%d", i)), Value: []byte{byte(i), 0xff}, LastEvent: 1735689600_000000000})
	}
	if err := st.Commit(context.Background(), state.Namespace{Name: "tallies"}, writes, nil); err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("sluice_up 1\n")) })
	// The "tallies" namespace has a view, as a plugin's would: it shows the
	// first byte as a count, and fails for user-3 as a broken plugin might.
	views := func(ns string) (httpapi.Viewer, bool) {
		if ns != "tallies" {
			return nil, false
		}
		return func(_ context.Context, key string, st []byte) ([]byte, error) {
			if key == "user-3" {
				return nil, errors.New("view exploded")
			}
			return fmt.Appendf(nil, `{"count":%d}`, st[0]), nil
		}, true
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: st, Token: tok, Ready: func() bool { return true }, Metrics: metrics, Views: views}))
	t.Cleanup(srv.Close)
	return srv, st
}

func do(t *testing.T, method, url, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuth(t *testing.T) {
	srv, _ := setup(t, token)
	for _, tc := range []struct {
		name, method, path, tok string
		want                    int
	}{
		{"health needs no token", "GET", "/healthz", "", 200},
		{"ready needs no token", "GET", "/readyz", "", 200},
		{"lookup without token", "GET", "/v1/state/tallies/user-1", "", 401},
		{"lookup with a wrong token", "GET", "/v1/state/tallies/user-1", "nope-nope-nope-nope", 401},
		{"list without token", "GET", "/v1/state/tallies", "", 401},
		{"delete without token", "DELETE", "/v1/state/tallies/user-1", "", 401},
		{"lookup with the token", "GET", "/v1/state/tallies/user-1", token, 200},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with the token", "GET", "/metrics", token, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, body := do(t, tc.method, srv.URL+tc.path, tc.tok); got != tc.want {
				t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, got, body, tc.want)
			}
		})
	}
}

func TestStateAPIOffWithoutToken(t *testing.T) {
	srv, _ := setup(t, "")
	if got, body := do(t, "GET", srv.URL+"/v1/state/tallies/user-1", "anything"); got != 403 || !strings.Contains(body, "http_token") {
		t.Errorf("with no token configured: %d %q, want 403 naming http_token", got, body)
	}
}

func TestLookupListDelete(t *testing.T) {
	srv, _ := setup(t, token)
	code, body := do(t, "GET", srv.URL+"/v1/state/tallies/user-3", token)
	var v httpapi.EntryView
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
		t.Fatalf("lookup: %d %s", code, body)
	}
	if !v.Found || v.Bytes != 2 || v.Raw != "A/8=" || v.LastEvent != "2025-01-01T00:00:00Z" {
		t.Errorf("lookup of user-3 = %+v", v)
	}
	if v.Value != nil || v.ViewError != "view exploded" {
		t.Errorf("lookup of user-3 whose view fails: value %s, view_error %q; want no value and the view's error", v.Value, v.ViewError)
	}
	code, body = do(t, "GET", srv.URL+"/v1/state/tallies/user-2", token)
	v = httpapi.EntryView{}
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 {
		t.Fatalf("lookup: %d %s", code, body)
	}
	var view struct{ Count *int }
	if json.Unmarshal(v.Value, &view) != nil || view.Count == nil || *view.Count != 2 || v.Raw != "Av8=" || v.ViewError != "" {
		t.Errorf("lookup of user-2 = %s, want the view's JSON beside the raw bytes", body)
	}
	if code, _ := do(t, "GET", srv.URL+"/v1/state/tallies/nobody", token); code != 404 {
		t.Errorf("lookup of a missing key: %d, want 404", code)
	}

	// Pages of two, following next until it is empty.
	var all []string
	after := ""
	for i := 0; i < 10; i++ {
		code, body := do(t, "GET", srv.URL+"/v1/state/tallies?limit=2&after="+after, token)
		var p httpapi.Page
		if err := json.Unmarshal([]byte(body), &p); err != nil || code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		if len(p.Keys) > 2 {
			t.Fatalf("page of %d keys, limit 2", len(p.Keys))
		}
		all = append(all, p.Keys...)
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if strings.Join(all, ",") != "user-0,user-1,user-2,user-3,user-4" {
		t.Errorf("listed %v", all)
	}
	if code, _ := do(t, "GET", srv.URL+"/v1/state/tallies?limit=0", token); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}

	if code, body := do(t, "DELETE", srv.URL+"/v1/state/tallies/user-3", token); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/v1/state/tallies/user-3", token); code != 404 {
		t.Errorf("lookup after delete: %d, want 404 (erased)", code)
	}
}

// TestStateAPIOfAnAgentWithoutState: an agent whose pipelines keep no
// state (or whose keyed step is not built yet) has not opened its store,
// and a lookup, list or delete says so (503: ask again) without opening
// it: opening would take the data dir's lock from an agent that needs it.
func TestStateAPIOfAnAgentWithoutState(t *testing.T) {
	dir := t.TempDir()
	st, err := state.OpenLazy(state.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: st, Token: token, Ready: func() bool { return true }, Metrics: metrics}))
	t.Cleanup(srv.Close)
	for _, req := range [][2]string{{"GET", "/v1/state/tallies/user-1"}, {"GET", "/v1/state/tallies"}, {"DELETE", "/v1/state/tallies/user-1"}} {
		if got, body := do(t, req[0], srv.URL+req[1], token); got != http.StatusServiceUnavailable || !strings.Contains(body, "state store is not open") {
			t.Errorf("%s %s: %d %q, want 503 saying the store is not open", req[0], req[1], got, body)
		}
	}
	if st.Opened() {
		t.Error("the state API opened the store")
	}
	// Another agent can still take the dir.
	other, err := state.Open(context.Background(), state.Options{Dir: dir})
	if err != nil {
		t.Fatalf("a second store on the dir: %v", err)
	}
	_ = other.Close()
}
