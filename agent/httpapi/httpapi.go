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
// format, so they travel as base64 beside what the agent knows of them.
type EntryView struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Found     bool   `json:"found"`
	LastEvent string `json:"last_event,omitempty"`
	Bytes     int    `json:"bytes"`
	Value     string `json:"value_base64,omitempty"`
}

// View builds the EntryView of a Get result.
func View(ns, key string, e state.Entry, found bool) EntryView {
	v := EntryView{Namespace: ns, Key: key, Found: found}
	if found {
		v.Bytes = len(e.Value)
		v.Value = base64.StdEncoding.EncodeToString(e.Value)
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

// New returns the server's handler. ready reports whether the agent's
// pipelines are up; metrics serves /metrics.
func New(st *state.Store, token string, ready func() bool, metrics http.Handler) http.Handler {
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
		writeJSON(w, status, View(ns, key, e, found))
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
