// Package ingest provides the `http_ingest` input: the agent's own HTTP
// endpoint that users POST events to (a JSON object, a JSON array or NDJSON),
// so a pipeline that reads Kafka can take the same events straight from
// applications that cannot, or should not, talk to a broker.
//
// One request is one Benthos batch, and the request is answered only once
// the pipeline has acknowledged that batch: a 2xx means every output took
// the events, anything else means the client should retry (at-least-once).
// With `sync_response` the answer is the events as the pipeline left them
// at its `sync_response` processor, each failed one with its error.
package ingest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Metadata keys set on every message.
const (
	MetaIndex      = "http_ingest_index"
	MetaRemoteAddr = "http_ingest_remote_addr"
	// MetaClientSubject is the subject of the client's verified
	// certificate, set only with mTLS, so a pipeline can tell senders
	// apart without a token per client.
	MetaClientSubject = "http_ingest_client_subject"
)

// Server limits that are not worth a config field: the header timeout stops
// a client that never finishes its headers from holding a connection, and
// shutdown is bounded because Benthos closes inputs with a context that
// never ends, while a client still uploading a body would hold Shutdown.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
)

// ConfigSpec is the input's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Network").
		Summary("Receives events over HTTP: POST a JSON object, a JSON array or NDJSON; each request becomes one batch and is answered once the pipeline has delivered it.").
		Description("The body is parsed by shape: one JSON object is one event; a JSON array is one event per element; anything else is NDJSON, one JSON value per non-blank line. Each event keeps its bytes exactly as sent. A body that does not parse is refused as a whole with 400 and an error naming the array element or NDJSON line, so nothing is half-ingested. Every message carries the metadata `http_ingest_index` (its 0-based position in the request) and `http_ingest_remote_addr`.\n\n"+
			"The request waits until the batch is acknowledged. Without `sync_response`: 202 `{\"accepted\": N}` once every output took the events; 503 if the pipeline failed to deliver them (retry); 503 if the pipeline did not even take them within `timeout` (nothing was ingested, retry); 504 if it took them but did not finish within `timeout` (they may still be delivered, so a retry can duplicate them). Errors are JSON: `{\"error\": \"...\"}`.\n\n"+
			"With `sync_response: true` the answer (200) is the events as they were when they passed a `sync_response: {}` processor, which the pipeline must have: a single-object request gets one value back, an array or NDJSON request gets an array in order. An event that failed a processing step before that point (e.g. a `mapping` that threw) is answered as `{\"error\": \"<reason>\", \"event\": <the event>}`, and a single-object request then gets 422. If no event reached a `sync_response` processor the answer is 500: the pipeline lacks one, or dropped every event before it.").
		Fields(
			service.NewStringField("address").Description("The address the input's own HTTP server listens on, as `host:port`. Port 0 picks a free port.").Default("127.0.0.1:4196"),
			service.NewStringField("path").Description("The path events are POSTed to; other paths answer 404.").Default("/v1/events"),
			service.NewBoolField("sync_response").Description("Answer with the processed events, as captured by a `sync_response: {}` processor in the pipeline, instead of just their count.").Default(false),
			service.NewDurationField("timeout").Description("How long a request waits for its batch to be acknowledged by the pipeline before it is answered 503 (not taken) or 504 (taken, outcome unknown).").Default("10s"),
			service.NewIntField("max_body_bytes").Description("The largest request body accepted; larger ones answer 413.").Default(10485760),
			service.NewStringField("token").Description("When set, requests must carry `Authorization: Bearer <token>`, else they answer 401.").Default("").Secret(),
			tlsField(),
		).
		LintRule(tlsLintRule).
		Example("Mutual TLS", "HTTPS for clients holding a certificate from the clients' CA, plus a bearer token.", `
input:
  http_ingest:
    address: 0.0.0.0:4196
    token: ${INGEST_TOKEN}
    tls:
      cert_file: /etc/sluice/tls/tls.crt
      key_file: /etc/sluice/tls/tls.key
      client_ca_file: /etc/sluice/tls/clients-ca.crt
`)
}

// Register adds the `http_ingest` input to env.
func Register(env *service.Environment) error {
	return register(env, nil)
}

// register is Register with a hook told the address the server bound, so
// tests can listen on port 0 and still find the server.
func register(env *service.Environment, onListen func(net.Addr)) error {
	return env.RegisterBatchInput("http_ingest", ConfigSpec(), func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
		in, err := newInput(conf, mgr.Logger())
		if err != nil {
			return nil, err
		}
		in.onListen = onListen
		// Deliberately not wrapped in AutoRetryNacksBatched: a nack is
		// answered to the client, which owns the retry.
		return in, nil
	})
}

func newInput(conf *service.ParsedConfig, log *service.Logger) (*input, error) {
	in := &input{log: log, reqs: make(chan *request), done: make(chan struct{})}
	var err error
	if in.address, err = conf.FieldString("address"); err != nil {
		return nil, err
	}
	if in.path, err = conf.FieldString("path"); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(in.path, "/") {
		return nil, fmt.Errorf("path %q must start with /", in.path)
	}
	if in.syncResponse, err = conf.FieldBool("sync_response"); err != nil {
		return nil, err
	}
	if in.timeout, err = conf.FieldDuration("timeout"); err != nil {
		return nil, err
	}
	if in.timeout <= 0 {
		return nil, fmt.Errorf("timeout must be positive, got %v", in.timeout)
	}
	maxBody, err := conf.FieldInt("max_body_bytes")
	if err != nil {
		return nil, err
	}
	if maxBody <= 0 {
		return nil, fmt.Errorf("max_body_bytes must be positive, got %d", maxBody)
	}
	in.maxBody = int64(maxBody)
	token, err := conf.FieldString("token")
	if err != nil {
		return nil, err
	}
	in.token = []byte(token)
	if in.tls, err = parseTLS(conf); err != nil {
		return nil, fmt.Errorf("http_ingest: %w", err)
	}
	return in, nil
}

type input struct {
	address      string
	path         string
	syncResponse bool
	timeout      time.Duration
	maxBody      int64
	token        []byte
	tls          *tls.Config // nil: plain HTTP
	log          *service.Logger
	onListen     func(net.Addr)

	// reqs is unbuffered so that a request counts as taken only once
	// ReadBatch has it; until then nothing is ingested and a 503 is a
	// clean "retry".
	reqs      chan *request
	done      chan struct{}
	closeOnce sync.Once

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// logWriter sends the HTTP server's own messages to the pipeline's log.
type logWriter struct{ log *service.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimRight(p, "\n")
	if bytes.HasSuffix(msg, []byte(": EOF")) {
		// A connection closed before a handshake: port probes and
		// health checks, every few seconds; not worth a warning.
		w.log.Debugf("http_ingest: %s", msg)
	} else {
		w.log.Warnf("http_ingest: %s", msg)
	}
	return len(p), nil
}

// request is one HTTP request's batch on its way to the pipeline.
type request struct {
	batch service.MessageBatch
	// acked has room for one result so the ack never blocks on a handler
	// that has already answered (timed out, client gone); extra acks are
	// dropped.
	acked chan error
}

func (in *input) Connect(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	select {
	case <-in.done:
		return service.ErrEndOfInput
	default:
	}
	if in.srv != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", in.address)
	if err != nil {
		return fmt.Errorf("http_ingest cannot listen on %s (is another process using it? change `address`): %w", in.address, err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(in.serveHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		TLSConfig:         in.tls,
		// Refused handshakes (a client without a trusted certificate) are
		// what an operator setting up mTLS needs to see, in the agent's log
		// rather than on stderr.
		ErrorLog: log.New(logWriter{in.log}, "", 0),
	}
	in.srv, in.ln = srv, ln
	scheme, note, serve := "http", "", srv.Serve
	if in.tls != nil {
		// The certificates are in TLSConfig already; ServeTLS is used
		// rather than a tls.Listener so that HTTP/2 is offered as well.
		scheme, serve = "https", func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		if in.tls.ClientCAs != nil {
			note = " (client certificates required)"
		}
	}
	go func() {
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Errorf("http_ingest server on %s stopped: %v", ln.Addr(), err)
		}
	}()
	in.log.Infof("http_ingest listening on %s://%s%s%s", scheme, ln.Addr(), in.path, note)
	if in.onListen != nil {
		in.onListen(ln.Addr())
	}
	return nil
}

func (in *input) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	select {
	case req := <-in.reqs:
		return req.batch, func(_ context.Context, err error) error {
			select {
			case req.acked <- err:
			default:
			}
			return nil
		}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-in.done:
		return nil, nil, service.ErrEndOfInput
	}
}

// Close stops the server. Benthos calls it after the acks of batches it
// took have resolved, so handlers still waiting are those the pipeline will
// never answer; closing done makes them answer 503 so Shutdown can finish.
func (in *input) Close(ctx context.Context) error {
	in.closeOnce.Do(func() { close(in.done) })
	in.mu.Lock()
	srv := in.srv
	in.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutting down http_ingest server on %s: %w", in.address, err)
	}
	return nil
}

func (in *input) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != in.path {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such path %q; POST events to %s", r.URL.Path, in.path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; POST events to %s", r.Method, in.path))
		return
	}
	if !in.authorized(r) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token; send Authorization: Bearer <token>")
		return
	}

	body, status, err := in.readBody(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	events, shape, err := parseBody(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(events) == 0 {
		// An empty array: nothing to deliver, and a batch of none cannot
		// go through Benthos; answering success keeps clients that flush
		// empty buffers simple.
		if in.syncResponse {
			writeJSON(w, http.StatusOK, []json.RawMessage{})
		} else {
			writeJSON(w, http.StatusAccepted, map[string]int{"accepted": 0})
		}
		return
	}

	var subject string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		subject = r.TLS.PeerCertificates[0].Subject.String()
	}
	batch := make(service.MessageBatch, len(events))
	for i, e := range events {
		m := service.NewMessage(e)
		m.MetaSetMut(MetaIndex, i)
		m.MetaSetMut(MetaRemoteAddr, r.RemoteAddr)
		if subject != "" {
			m.MetaSetMut(MetaClientSubject, subject)
		}
		batch[i] = m
	}
	var store *service.SyncResponseStore
	if in.syncResponse {
		batch, store = batch.WithSyncResponseStore()
	}

	res := in.deliver(r.Context(), batch)
	switch {
	case res.gone:
		return // the client went away; there is no one to answer
	case res.status != 0:
		writeError(w, res.status, res.msg)
	case res.ackErr != nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the pipeline failed to deliver the events, retry: %v (outputs that already took some of them may get duplicates)", res.ackErr))
	case store == nil:
		writeJSON(w, http.StatusAccepted, map[string]int{"accepted": len(events)})
	default:
		in.writeSyncResponse(w, shape, store)
	}
}

// delivery is how a batch's delivery ended: acked (ackErr nil or not), or
// not acked, with the status and message to answer, or the client gone.
type delivery struct {
	ackErr error
	status int
	msg    string
	gone   bool
}

// deliver hands batch to ReadBatch and waits for its ack.
func (in *input) deliver(ctx context.Context, batch service.MessageBatch) delivery {
	timer := time.NewTimer(in.timeout)
	defer timer.Stop()
	req := &request{batch: batch, acked: make(chan error, 1)}
	select {
	case in.reqs <- req:
	case <-timer.C:
		return delivery{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("the pipeline did not take the events within %v (it is busy or stalled); nothing was ingested, retry", in.timeout)}
	case <-in.done:
		return delivery{status: http.StatusServiceUnavailable, msg: "the agent is shutting down; nothing was ingested, retry"}
	case <-ctx.Done():
		return delivery{gone: true}
	}
	select {
	case err := <-req.acked:
		return delivery{ackErr: err}
	case <-timer.C:
		return delivery{status: http.StatusGatewayTimeout, msg: fmt.Sprintf("timed out after %v waiting for the pipeline to acknowledge the events; they may still be delivered, so a retry may duplicate them unless the pipeline is idempotent", in.timeout)}
	case <-in.done:
		return delivery{status: http.StatusServiceUnavailable, msg: "the agent shut down before the pipeline acknowledged the events; they may or may not have been delivered"}
	case <-ctx.Done():
		return delivery{gone: true}
	}
}

func (in *input) authorized(r *http.Request) bool {
	if len(in.token) == 0 {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), in.token) == 1
}

func (in *input) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	tooLarge := fmt.Errorf("the request body is larger than max_body_bytes (%d bytes); split it into smaller requests", in.maxBody)
	if r.ContentLength > in.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, in.maxBody)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		}
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	}
	return buf.Bytes(), 0, nil
}

// failedEvent is how an event that failed processing is answered; the
// field order puts the reason first for people reading responses.
type failedEvent struct {
	Error string          `json:"error"`
	Event json.RawMessage `json:"event"`
}

func (in *input) writeSyncResponse(w http.ResponseWriter, sh shape, store *service.SyncResponseStore) {
	var values []any
	failed := false
	for _, b := range store.Read() {
		for _, m := range b {
			v, f := renderEvent(m)
			values = append(values, v)
			failed = failed || f
		}
	}
	switch {
	case len(values) == 0:
		writeError(w, http.StatusInternalServerError, "no event reached a sync_response processor: with sync_response: true the pipeline must have a `sync_response: {}` processor where the response should be taken (after the processing whose result you want back), and must not drop every event before it")
	case sh == shapeObject && len(values) == 1:
		status := http.StatusOK
		if failed {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, values[0])
	default:
		// A list request, or one object the pipeline split into several.
		writeJSON(w, http.StatusOK, values)
	}
}

// renderEvent is a message's bytes as raw JSON when they are valid JSON and
// as a JSON string otherwise, wrapped with its error if it has one.
func renderEvent(m *service.Message) (any, bool) {
	b, err := m.AsBytes()
	var v json.RawMessage
	switch {
	case err != nil:
		v = jsonString("")
	case json.Valid(b):
		v = b
	default:
		v = jsonString(string(b))
	}
	if perr := m.GetError(); perr != nil {
		return failedEvent{Error: perr.Error(), Event: v}, true
	}
	if err != nil {
		return failedEvent{Error: fmt.Sprintf("reading the event: %v", err), Event: v}, true
	}
	return v, false
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Events are echoed back; escaping their <, > and & would change them.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":` + string(jsonString("rendering the response: "+err.Error())) + "}\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
