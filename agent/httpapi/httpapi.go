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
//	POST   /admin/reload                      load changed plugin and pipeline files now (as SIGHUP does); JSON per step
//
// For a namespace kept per Kafka partition (a scale-out step with a
// changelog), a key's lookup or erasure is answered by the agent owning
// the key's partition: this one, or the owner it is forwarded to
// (docs/SCALEOUT.md); listing takes ?partition=N.
//
// Every endpoint but /healthz and /readyz needs `Authorization: Bearer <token>`; with no token
// configured they are off (403), so state is never served unauthenticated.
package httpapi

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
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
	// Partition is the Kafka partition holding the key, for a namespace
	// whose state follows partitions; ServedBy the agent that answered
	// when this one forwarded the lookup.
	Partition *int32 `json:"partition,omitempty"`
	ServedBy  string `json:"served_by,omitempty"`
}

// Location is where a key of a namespace whose state follows Kafka
// partitions is served.
type Location struct {
	Partition int32
	// Local: this agent owns the partition; its state is in Namespace.
	Local     bool
	Namespace string
	// Owner is the owning agent's advertised HTTP address ("" if it
	// advertises none); OwnerID its Kafka client ID, for messages.
	Owner, OwnerID string
}

// forwardedHeader marks a lookup one agent forwarded to another, which
// answers it itself or not at all, so a lookup never goes round in
// circles while the group rebalances.
const forwardedHeader = "X-Sluice-Forwarded-By"

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
	// Reload loads changed plugin and pipeline files and returns what
	// happened to each, as JSON, and whether any new version was refused;
	// nil turns /admin/reload off.
	Reload func(ctx context.Context) (report any, refused bool)
	// Locate says where a key is served when its namespace's state
	// follows Kafka partitions (partitioned true); nil means none does.
	Locate func(ctx context.Context, ns, key string) (loc Location, partitioned bool, err error)
	// Partitioned says whether a namespace's state is kept per Kafka
	// partition; nil means none is.
	Partitioned func(ns string) bool
	// Erase deletes a key of a namespace whose state follows Kafka
	// partitions, on the agent owning its partition: through the
	// namespace's changelog, so a restore elsewhere does not bring it
	// back.
	Erase func(ctx context.Context, ns, key string) error
	// Self is this agent's advertised address, named in forwarded lookups.
	Self string
	// Client forwards lookups; nil means a client with a 10s timeout.
	Client *http.Client
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
	// An agent whose pipelines keep no state has not opened its store, and
	// a lookup must not open it: that would take the data dir's lock from
	// an agent that needs it (README, "The agent"). 503, not 404: while an
	// agent starts, its HTTP server (and its kafka input) run before its
	// keyed step is built and opens the store, and a client should ask
	// again, as it does during a rebalance.
	noState := func(w http.ResponseWriter) bool {
		if st.Opened() {
			return false
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "this agent's state store is not open: none of its pipelines keeps state (a keyed step, a sluice_state cache), or none has been built yet", http.StatusServiceUnavailable)
		return true
	}
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
	mux.HandleFunc("POST /admin/reload", auth(func(w http.ResponseWriter, r *http.Request) {
		if c.Reload == nil {
			http.Error(w, "reload is not available", http.StatusNotFound)
			return
		}
		report, refused := c.Reload(r.Context())
		// A refused version is a failed request for a deploy script (curl
		// --fail), though the old version keeps running: the body says which.
		status := http.StatusOK
		if refused {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, report)
	}))
	mux.HandleFunc("GET /v1/state/{namespace}/{key}", auth(func(w http.ResponseWriter, r *http.Request) {
		if noState(w) {
			return
		}
		ns, key := r.PathValue("namespace"), r.PathValue("key")
		storeNS := ns
		var part *int32
		loc, done := locate(w, r, c, ns, key)
		if done {
			return
		}
		if loc != nil {
			storeNS, part = loc.Namespace, &loc.Partition
		}
		e, found, err := st.Get(storeNS, key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status := http.StatusOK
		if !found {
			status = http.StatusNotFound
		}
		v := View(ns, key, e, found)
		v.Partition = part
		if found && c.Views != nil {
			if view, ok := c.Views(ns); ok {
				v.Render(r.Context(), view, e.Value)
			}
		}
		writeJSON(w, status, v)
	}))
	mux.HandleFunc("GET /v1/state/{namespace}", auth(func(w http.ResponseWriter, r *http.Request) {
		if noState(w) {
			return
		}
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
		storeNS := ns
		if c.Partitioned != nil {
			if c.Partitioned(ns) {
				p, err := strconv.ParseUint(q.Get("partition"), 10, 31)
				if err != nil {
					http.Error(w, fmt.Sprintf("namespace %s is kept per Kafka partition: list one with ?partition=N (this agent's copy of it)", ns), http.StatusBadRequest)
					return
				}
				storeNS = state.PartitionNamespace(ns, int32(p))
			}
		}
		keys, next, err := st.Scan(storeNS, q.Get("prefix"), q.Get("after"), limit)
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
		if noState(w) {
			return
		}
		ns, key := r.PathValue("namespace"), r.PathValue("key")
		loc, done := locate(w, r, c, ns, key)
		if done {
			return
		}
		if loc != nil {
			if err := c.Erase(r.Context(), ns, key); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if err := st.Delete(ns, key); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

// locate handles a key's request in a namespace kept per Kafka
// partition: it answers it (done) with an error, or by forwarding it to
// the agent owning the key's partition, or returns where the key is here.
// loc is nil for a namespace that is not kept per partition.
func locate(w http.ResponseWriter, r *http.Request, c Config, ns, key string) (loc *Location, done bool) {
	if c.Locate == nil {
		return nil, false
	}
	l, partitioned, err := c.Locate(r.Context(), ns, key)
	switch {
	case !partitioned:
		return nil, false
	case err != nil:
		http.Error(w, fmt.Sprintf("namespace %s: locate key %q: %v", ns, key, err), http.StatusServiceUnavailable)
		return nil, true
	case !l.Local:
		forward(w, r, c, l)
		return nil, true
	}
	return &l, false
}

// forward hands a lookup to the agent that owns the key's partition and
// relays its answer.
func forward(w http.ResponseWriter, r *http.Request, c Config, loc Location) {
	if by := r.Header.Get(forwardedHeader); by != "" {
		http.Error(w, fmt.Sprintf("partition %d is not this agent's (forwarded by %s; the group is rebalancing): try again", loc.Partition, by), http.StatusServiceUnavailable)
		return
	}
	if loc.Owner == "" {
		http.Error(w, fmt.Sprintf("partition %d is owned by %q, which advertises no HTTP address (advertise_address)", loc.Partition, loc.OwnerID), http.StatusServiceUnavailable)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+loc.Owner+r.URL.EscapedPath(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(forwardedHeader, cmp.Or(c.Self, "unnamed agent"))
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, fmt.Sprintf("partition %d is owned by %s: forward the lookup: %v", loc.Partition, loc.Owner, err), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		http.Error(w, fmt.Sprintf("partition %d is owned by %s: read its answer: %v", loc.Partition, loc.Owner, err), http.StatusBadGateway)
		return
	}
	w.Header().Set("X-Sluice-Served-By", loc.Owner)
	var v EntryView
	if r.Method == http.MethodGet && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound) {
		if json.Unmarshal(body, &v) == nil {
			v.ServedBy = loc.Owner
			writeJSON(w, resp.StatusCode, v)
			return
		}
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
