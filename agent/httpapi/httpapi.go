// Package httpapi is the agent's HTTP server: liveness and readiness for
// orchestrators, and the online lookup API over the state store (a feature
// store's read path, and erasure of one user for GDPR/CCPA requests).
//
//	GET    /healthz                           200 while the process serves
//	GET    /readyz                            200 once pipelines are running, else 503
//	GET    /v1/state/{namespace}/{key}        one key's state (JSON)
//	GET    /v1/state/{namespace}?prefix=&after=&limit=   a page of keys
//	DELETE /v1/state/{namespace}/{key}        erase one key
//	GET    /metrics                           Prometheus: every pipeline's Benthos metrics and the state store's
//
// Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`; with no token
// configured they are off (403), so state is never served unauthenticated.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/state"
)

// EntryView is how one key's state is shown: the plugin's bytes are its own
// format, so they travel as base64 beside what the agent knows of them,
// and, when the plugin that owns the namespace can render them (a state
// view, ABI.md §8.9), as that JSON.
type EntryView struct {
	Namespace string          `json:"namespace"`
	Key       string          `json:"key"`
	Found     bool            `json:"found"`
	LastEvent string          `json:"last_event,omitempty"`
	Bytes     int             `json:"bytes"`
	Value     json.RawMessage `json:"value,omitempty"`
	ViewError string          `json:"view_error,omitempty"`
	Raw       string          `json:"value_base64,omitempty"`
}

// Viewer renders one stored state as JSON.
type Viewer func(ctx context.Context, key string, state []byte) ([]byte, error)

// Config is what the server serves.
type Config struct {
	Store *state.Store
	// Token guards the state and metrics endpoints; empty turns them off.
	Token string
	// Ready reports whether the agent's pipelines are up.
	Ready func() bool
	// Metrics serves /metrics.
	Metrics http.Handler
	// Views finds the state view of a namespace, if a running step offers
	// one; nil means none does.
	Views func(ns string) (Viewer, bool)
}

// View builds the EntryView of a Get result.
func View(ns, key string, e state.Entry, found bool) EntryView {
	v := EntryView{Namespace: ns, Key: key, Found: found}
	if found {
		v.Bytes = len(e.Value)
		v.Raw = base64.StdEncoding.EncodeToString(e.Value)
		if e.LastEvent != 0 {
			v.LastEvent = time.Unix(0, e.LastEvent).UTC().Format(time.RFC3339Nano)
		}
	}
	return v
}

// Page is one page of a namespace's keys; Next, if set, is the `after` of
// the next page.
type Page struct {
	Namespace string   `json:"namespace"`
	Keys      []string `json:"keys"`
	Next      string   `json:"next,omitempty"`
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// Render fills in v.Value with the view's JSON, or v.ViewError with why it
// could not; the raw bytes stay either way.
func (v *EntryView) Render(ctx context.Context, view Viewer, state []byte) {
	js, err := view(ctx, v.Key, state)
	switch {
	case err != nil:
		v.ViewError = err.Error()
	case !json.Valid(js):
		v.ViewError = "the plugin's state view is not valid JSON"
	default:
		v.Value = js
	}
}

// New returns the server's handler.
func New(c Config) http.Handler {
	st, token, ready, metrics := c.Store, c.Token, c.Ready, c.Metrics
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "pipelines are not running yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				http.Error(w, "this endpoint is off: set http_token (SLUICE_HTTP_TOKEN) to enable it", http.StatusForbidden)
				return
			}
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
				http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /metrics", auth(metrics.ServeHTTP))
	mux.HandleFunc("GET /v1/state/{namespace}/{key}", auth(func(w http.ResponseWriter, r *http.Request) {
		ns, key := r.PathValue("namespace"), r.PathValue("key")
		e, found, err := st.Get(ns, key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status := http.StatusOK
		if !found {
			status = http.StatusNotFound
		}
		v := View(ns, key, e, found)
		if found && c.Views != nil {
			if view, ok := c.Views(ns); ok {
				v.Render(r.Context(), view, e.Value)
			}
		}
		writeJSON(w, status, v)
	}))
	mux.HandleFunc("GET /v1/state/{namespace}", auth(func(w http.ResponseWriter, r *http.Request) {
		ns := r.PathValue("namespace")
		q := r.URL.Query()
		limit := defaultLimit
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxLimit {
				http.Error(w, "limit must be an integer from 1 to "+strconv.Itoa(maxLimit), http.StatusBadRequest)
				return
			}
			limit = n
		}
		keys, next, err := st.Scan(ns, q.Get("prefix"), q.Get("after"), limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if keys == nil {
			keys = []string{}
		}
		writeJSON(w, http.StatusOK, Page{Namespace: ns, Keys: keys, Next: next})
	}))
	mux.HandleFunc("DELETE /v1/state/{namespace}/{key}", auth(func(w http.ResponseWriter, r *http.Request) {
		if err := st.Delete(r.PathValue("namespace"), r.PathValue("key")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
