package tokenchecker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type stateKey struct{}

// FromContext returns the AuthState the middleware stored in a request's context.
func FromContext(ctx context.Context) (*AuthState, bool) {
	s, ok := ctx.Value(stateKey{}).(*AuthState)
	return s, ok && s != nil
}

// NewContext returns a copy of ctx carrying s, as the middleware does (handy in tests of
// handlers).
func NewContext(ctx context.Context, s *AuthState) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

// MiddlewareOption configures MiddlewareWith.
type MiddlewareOption func(*middleware)

// RequirePrincipals makes the middleware authorize (see Checker.Authorize) instead of only
// checking: callers that are none of the principals get 403.
func RequirePrincipals(opts AuthorizeOptions, principals ...string) MiddlewareOption {
	return func(m *middleware) {
		m.principals = append([]string{}, principals...)
		m.authorizeOpts = opts
	}
}

// OnError registers a function called with every error the middleware answers for (to log
// them, for example). Errors never contain the token.
func OnError(f func(r *http.Request, status int, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = f }
}

type middleware struct {
	c             *Checker
	next          http.Handler
	principals    []string // nil: check only
	authorizeOpts AuthorizeOptions
	onError       func(*http.Request, int, error)
}

// Middleware checks the request's bearer token before calling next, with the AuthState in
// the request's context (FromContext). A missing or malformed Authorization header is refused
// with 401 without any network call. Failures answer a JSON body
// {"error": {"code": "TC_…", "message": "…"}}:
//
//   - 401 with WWW-Authenticate: Bearer error="invalid_token": the token is inactive,
//     expired, lacks the expected scopes or audience, or is not a valid bearer token;
//   - 403: the caller is none of the required principals (see MiddlewareWith);
//   - 503: the authorization server (or the Groups API) is unavailable, the request's context
//     ended first, or the checker is closed;
//   - 500: anything else (for example rejected client credentials: a configuration problem).
func (c *Checker) Middleware(next http.Handler) http.Handler {
	return c.MiddlewareWith()(next)
}

// MiddlewareWith is Middleware with options, as a func(http.Handler) http.Handler for
// routers' Use methods:
//
//	mux.Handle("/admin/", checker.MiddlewareWith(
//		tokenchecker.RequirePrincipals(tokenchecker.AuthorizeOptions{}, adminGroup))(adminHandler))
func (c *Checker) MiddlewareWith(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		m := &middleware{c: c, next: next}
		for _, o := range opts {
			o(m)
		}
		return m
	}
}

var (
	errNoBearer = &Error{Code: StatusInvalidArgument,
		Message: "the request has no Authorization header; send one: \"Authorization: Bearer <access token>\""}
	errBadBearer = &Error{Code: StatusInvalidArgument,
		Message: "the Authorization header is malformed; send exactly one: \"Authorization: Bearer <access token>\""}
)

// BearerToken returns the token of a request's "Authorization: Bearer <token>" header
// (RFC 6750). The error is an *Error with code StatusInvalidArgument when the header is
// missing, repeated, of another scheme, or its token is empty or holds characters other than
// visible ASCII.
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", errNoBearer
	}
	if len(values) > 1 {
		return "", errBadBearer
	}
	h := values[0]
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", errBadBearer
	}
	token := strings.Trim(h[len(scheme):], " \t")
	if token == "" {
		return "", errBadBearer
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x21 || b > 0x7e {
			return "", errBadBearer
		}
	}
	return token, nil
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, err := BearerToken(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	var state *AuthState
	if m.principals != nil {
		state, err = m.c.Authorize(r.Context(), token, m.principals, m.authorizeOpts)
	} else {
		state, err = m.c.Check(r.Context(), token)
	}
	if err != nil {
		m.fail(w, r, err)
		return
	}
	m.next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), state)))
}

func (m *middleware) fail(w http.ResponseWriter, r *http.Request, err error) {
	if m.onError != nil {
		status, _, _ := httpError(err)
		m.onError(r, status, err)
	}
	WriteCheckError(w, err)
}

// WriteCheckError answers a failed check (an error of BearerToken, Check, Authorize or
// DependentToken) as Middleware does: status, WWW-Authenticate header and JSON body.
func WriteCheckError(w http.ResponseWriter, err error) {
	status, code, message := httpError(err)
	switch {
	case err == errNoBearer:
		// RFC 6750 §3.1: no error code when the request had no credentials.
		w.Header().Set("WWW-Authenticate", `Bearer`)
	case err == errBadBearer:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	WriteError(w, status, code, message)
}

// httpError maps an error of Check or Authorize to an HTTP status and a body.
func httpError(err error) (status int, code, message string) {
	var e *Error
	switch {
	case errors.As(err, &e):
		switch {
		case e.Code.IsTokenProblem() || e.Code == StatusInvalidArgument:
			return http.StatusUnauthorized, e.Code.String(), e.Message
		case e.Code == StatusNotAuthorized:
			return http.StatusForbidden, e.Code.String(), e.Message
		case e.Code == StatusAuthUnavailable:
			return http.StatusServiceUnavailable, e.Code.String(),
				"the authorization service is unavailable; retry later"
		default:
			return http.StatusInternalServerError, e.Code.String(),
				"internal error while checking the access token"
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, StatusAuthUnavailable.String(),
			"the access token could not be checked in time; retry later"
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable, StatusAuthUnavailable.String(),
			"the service is shutting down; retry later"
	}
	return http.StatusInternalServerError, StatusPanic.String(), "internal error while checking the access token"
}

// WriteError writes the JSON error body the middleware uses:
// {"error": {"code": code, "message": message}}.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Error detail `json:"error"`
	}{detail{code, message}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
