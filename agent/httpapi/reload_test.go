package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/agent/httpapi"
)

// TestAdminReload: POST /admin/reload needs the bearer token, answers the
// reload's report as JSON, and says with its status whether a new version
// was refused.
func TestAdminReload(t *testing.T) {
	refused := false
	calls := 0
	reload := func(context.Context) (any, bool) {
		calls++
		return map[string]any{"plugins": []map[string]string{{"step": "score", "result": "reloaded"}}}, refused
	}
	for _, tc := range []struct {
		name       string
		tok        string // the server's
		send       string // the request's
		method     string
		refused    bool
		wantStatus int
		wantBody   string
		wantCalls  int
	}{
		{name: "ok", tok: token, send: token, method: "POST", wantStatus: http.StatusOK, wantBody: `"result": "reloaded"`, wantCalls: 1},
		{name: "refused", tok: token, send: token, method: "POST", refused: true, wantStatus: http.StatusUnprocessableEntity, wantBody: `"step": "score"`, wantCalls: 1},
		{name: "no token", tok: token, send: "", method: "POST", wantStatus: http.StatusUnauthorized},
		{name: "wrong token", tok: token, send: "nope", method: "POST", wantStatus: http.StatusUnauthorized},
		{name: "off without a configured token", tok: "", send: "", method: "POST", wantStatus: http.StatusForbidden},
		{name: "GET is not a reload", tok: token, send: token, method: "GET", wantStatus: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, refused = 0, tc.refused
			srv := httptest.NewServer(httpapi.New(httpapi.Config{Token: tc.tok, Ready: func() bool { return true }, Metrics: http.NotFoundHandler(), Reload: reload}))
			defer srv.Close()
			status, body := do(t, tc.method, srv.URL+"/admin/reload", tc.send)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %s, want %d with %q", status, body, tc.wantStatus, tc.wantBody)
			}
			if calls != tc.wantCalls {
				t.Errorf("reload ran %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}
