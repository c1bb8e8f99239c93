// Command actionprovider is a small Globus-Action-Provider-style HTTP service protected by
// the tokenchecker middleware: an "echo" action that completes at once.
//
//	GET  /                    description (public)
//	POST /run                 start an action (callers in -runnable-by)
//	GET  /{action_id}/status  the action (its creator, monitor_by and manage_by)
//	POST /{action_id}/cancel  cancel it (creator and manage_by; a no-op, it's done)
//	POST /{action_id}/release forget it (creator and manage_by)
//
// Configuration comes from flags, defaulting to the environment:
//
//	TC_CLIENT_ID, TC_CLIENT_SECRET  the service's Globus Auth client
//	TC_SCOPES                       the scopes a token must carry (space- or comma-separated)
//	TC_AUTH_URL, TC_GROUPS_URL      optional: other Globus Auth / Groups base URLs
//	TC_ADDR                         listen address (default 127.0.0.1:8080)
//
// Run it against the repository's fake Globus server:
//
//	target/release/fake-globus &   # prints FAKE_GLOBUS_URL=http://127.0.0.1:PORT
//	TC_CLIENT_ID=test-client TC_CLIENT_SECRET=test-secret \
//	TC_SCOPES=urn:globus:auth:scope:test:all TC_AUTH_URL=$URL TC_GROUPS_URL=$URL \
//	go run -tags tokenchecker_intree ./examples/actionprovider   # or the default, with PKG_CONFIG_PATH
//	curl -H 'Authorization: Bearer tok-valid' -d '{"body":{"echo_string":"hi"}}' localhost:8080/run
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	addr       string
	cfg        tokenchecker.Config
	runnableBy []string
}

func loadOptions(args []string, getenv func(string) string) (options, error) {
	var o options
	var scopes, runnableBy string
	fs := flag.NewFlagSet("actionprovider", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", or(getenv("TC_ADDR"), "127.0.0.1:8080"), "listen address (TC_ADDR)")
	fs.StringVar(&o.cfg.ClientID, "client-id", getenv("TC_CLIENT_ID"), "Globus Auth client id (TC_CLIENT_ID)")
	fs.StringVar(&o.cfg.ClientSecret, "client-secret", getenv("TC_CLIENT_SECRET"), "client secret (TC_CLIENT_SECRET)")
	fs.StringVar(&scopes, "scopes", getenv("TC_SCOPES"), "expected scopes, space- or comma-separated (TC_SCOPES)")
	fs.StringVar(&o.cfg.AuthURL, "auth-url", getenv("TC_AUTH_URL"), "Globus Auth base URL (TC_AUTH_URL)")
	fs.StringVar(&o.cfg.GroupsURL, "groups-url", getenv("TC_GROUPS_URL"), "Globus Groups base URL (TC_GROUPS_URL)")
	fs.StringVar(&runnableBy, "runnable-by", "all_authenticated_users", "principals allowed to run the action, comma-separated")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.cfg.ExpectedScopes = tokenchecker.SplitScopes(scopes)
	o.runnableBy = tokenchecker.SplitScopes(runnableBy)
	switch {
	case o.cfg.ClientID == "":
		return o, errors.New("set the client id: -client-id or TC_CLIENT_ID")
	case o.cfg.ClientSecret == "":
		return o, errors.New("set the client secret: -client-secret or TC_CLIENT_SECRET")
	case len(o.cfg.ExpectedScopes) == 0:
		return o, errors.New("set the expected scopes: -scopes or TC_SCOPES")
	}
	return o, nil
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// run serves until ctx ends, then shuts down gracefully. It writes "listening on http://ADDR"
// to stdout once it accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := loadOptions(args, getenv)
	if err != nil {
		return err
	}
	checker, err := tokenchecker.New(o.cfg)
	if err != nil {
		return err
	}
	defer checker.Close()

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newProvider(checker, o).routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// action is one run of the echo action.
type action struct {
	ActionID       string         `json:"action_id"`
	Status         string         `json:"status"`
	DisplayStatus  string         `json:"display_status"`
	CreatorID      string         `json:"creator_id"`
	MonitorBy      []string       `json:"monitor_by"`
	ManageBy       []string       `json:"manage_by"`
	StartTime      time.Time      `json:"start_time"`
	CompletionTime time.Time      `json:"completion_time"`
	ReleaseAfter   string         `json:"release_after"`
	Details        map[string]any `json:"details"`
	requestID      string
}

type provider struct {
	checker *tokenchecker.Checker
	opts    options

	mu      sync.Mutex
	actions map[string]*action
}

func newProvider(c *tokenchecker.Checker, o options) *provider {
	return &provider{checker: c, opts: o, actions: map[string]*action{}}
}

func (p *provider) routes() http.Handler {
	mux := http.NewServeMux()
	runners := p.checker.MiddlewareWith(tokenchecker.RequirePrincipals(
		tokenchecker.AuthorizeOptions{AllowAllAuthenticatedUsers: true, AllowPublic: true}, p.opts.runnableBy...))
	mux.HandleFunc("GET /{$}", p.describe)
	mux.Handle("POST /run", runners(http.HandlerFunc(p.run)))
	mux.Handle("GET /{id}/status", p.checker.Middleware(p.withAction(false, p.status)))
	mux.Handle("POST /{id}/cancel", p.checker.Middleware(p.withAction(true, p.status)))
	mux.Handle("POST /{id}/release", p.checker.Middleware(p.withAction(true, p.release)))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *provider) describe(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"api_version":       "1.0",
		"title":             "Echo (tokenchecker Go example)",
		"subtitle":          "Returns its input",
		"admin_contact":     "admin@example.org",
		"synchronous":       true,
		"log_supported":     false,
		"globus_auth_scope": p.opts.cfg.ExpectedScopes[0],
		"visible_to":        []string{"public"},
		"runnable_by":       p.opts.runnableBy,
		"input_schema": map[string]any{
			"type":                 "object",
			"properties":           map[string]any{"echo_string": map[string]any{"type": "string"}},
			"required":             []string{"echo_string"},
			"additionalProperties": false,
		},
	})
}

func (p *provider) run(w http.ResponseWriter, r *http.Request) {
	state, _ := tokenchecker.FromContext(r.Context())
	var req struct {
		RequestID    string   `json:"request_id"`
		MonitorBy    []string `json:"monitor_by"`
		ManageBy     []string `json:"manage_by"`
		ReleaseAfter string   `json:"release_after"`
		Body         struct {
			EchoString *string `json:"echo_string"`
		} `json:"body"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Body.EchoString == nil {
		tokenchecker.WriteJSONError(w, http.StatusBadRequest, "BAD_REQUEST",
			`send {"body": {"echo_string": "..."}} with optional request_id, monitor_by, manage_by`)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.actions { // a retried request gets the same action
		if req.RequestID != "" && a.requestID == req.RequestID && a.CreatorID == state.EffectiveIdentity {
			writeJSON(w, http.StatusAccepted, a)
			return
		}
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	now := time.Now().UTC()
	a := &action{
		ActionID:       hex.EncodeToString(id),
		Status:         "SUCCEEDED",
		DisplayStatus:  "Echoed",
		CreatorID:      state.EffectiveIdentity,
		MonitorBy:      orEmpty(req.MonitorBy),
		ManageBy:       orEmpty(req.ManageBy),
		StartTime:      now,
		CompletionTime: now,
		ReleaseAfter:   or(req.ReleaseAfter, "P30D"),
		Details:        map[string]any{"echo_string": *req.Body.EchoString, "requested_by": state.Username},
		requestID:      req.RequestID,
	}
	p.actions[a.ActionID] = a
	writeJSON(w, http.StatusAccepted, a)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// withAction finds the action and lets the caller at it when it is its creator, or in its
// manage_by (or monitor_by, unless manage): the principals may name groups, so the library
// decides (Authorize fetches the caller's groups only when needed).
func (p *provider) withAction(manage bool, next func(http.ResponseWriter, *http.Request, *action)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		a, ok := p.actions[r.PathValue("id")]
		p.mu.Unlock()
		if !ok {
			tokenchecker.WriteJSONError(w, http.StatusNotFound, "NOT_FOUND", "no such action; it may have been released")
			return
		}
		allowed := append([]string{a.CreatorID}, a.ManageBy...)
		if !manage {
			allowed = append(allowed, a.MonitorBy...)
		}
		token, _ := tokenchecker.BearerToken(r) // the middleware already checked it
		if _, err := p.checker.Authorize(r.Context(), token, slices.Clip(allowed), tokenchecker.AuthorizeOptions{}); err != nil {
			p.checker.WriteError(w, err)
			return
		}
		next(w, r, a)
	})
}

func (p *provider) status(w http.ResponseWriter, r *http.Request, a *action) {
	writeJSON(w, http.StatusOK, a)
}

func (p *provider) release(w http.ResponseWriter, r *http.Request, a *action) {
	p.mu.Lock()
	delete(p.actions, a.ActionID)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, a)
}
