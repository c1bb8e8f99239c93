package tokenchecker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

type stateKey struct{}

// FromContext returns the AuthState the middleware stored in a request's context.
func FromContext(ctx context.Context) (*AuthState, bool) {
	s, ok := ctx.Value(stateKey{}).(*AuthState)
	return s, ok && s != nil
}

// NewContext returns a copy of ctx carrying s, as the middleware does (for handlers' tests).
func NewContext(ctx context.Context, s *AuthState) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

// DefaultRealm is the realm of the middleware's WWW-Authenticate challenges by default.
const DefaultRealm = "api"

// RetryAfterSeconds is the Retry-After header of the middleware's 503 answers.
const RetryAfterSeconds = 5

// MiddlewareOption configures MiddlewareWith (and, for Realm, Checker.WriteError).
type MiddlewareOption func(*middleware)

// RequirePrincipals makes the middleware authorize (see Checker.Authorize) instead of only
// checking: callers that are none of the principals get 403 TC_NOT_AUTHORIZED.
func RequirePrincipals(opts AuthorizeOptions, principals ...string) MiddlewareOption {
	return func(m *middleware) { m.principals, m.authorizeOpts = append([]string{}, principals...), opts }
}

// OnError registers a function called, before the answer is written, with every error the
// middleware answers for (with the library's detail, which the body lacks; never the token)
// and the HTTP status. Log at least the 5xx ones: 503 with ErrCredentialsRejected is this
// service's misconfiguration (wrong client_id or client_secret), 500 a bug.
func OnError(f func(r *http.Request, status int, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = f }
}

// Realm sets the realm of the WWW-Authenticate challenges (default DefaultRealm, "api").
// Double quotes and backslashes are escaped; control characters become spaces.
func Realm(realm string) MiddlewareOption {
	return func(m *middleware) { m.realm = realm }
}

type middleware struct {
	c             *Checker
	next          http.Handler
	principals    []string // nil: check only
	authorizeOpts AuthorizeOptions
	onError       func(*http.Request, int, error)
	realm         string
}

// Middleware checks the request's bearer token before calling next, with the AuthState in
// the request's context (FromContext). Failures are answered as the bindings' HTTP contract
// says (bindings/contract/http.json; the table in README.md), with a body
// {"error": {"code": "TC_…", "message": "<a fixed message>"}}: 401 with a Bearer challenge
// for a missing, malformed, inactive, expired or foreign token; 403 for a missing scope (the
// challenge names the expected scopes) or a caller none of RequirePrincipals matched; 503 with
// Retry-After when Globus Auth or Groups is unavailable, this service's credentials are
// refused, the request's context ends first or the checker is closed; 500 for anything else.
func (c *Checker) Middleware(next http.Handler) http.Handler {
	return c.MiddlewareWith()(next)
}

// MiddlewareWith is Middleware with options (RequirePrincipals, OnError, Realm), as a
// func(http.Handler) http.Handler for routers' Use methods:
//
//	mux.Handle("/admin/", checker.MiddlewareWith(
//		tokenchecker.RequirePrincipals(tokenchecker.AuthorizeOptions{}, adminGroup))(adminHandler))
func (c *Checker) MiddlewareWith(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		m := &middleware{c: c, next: next, realm: DefaultRealm}
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

// BearerToken returns the token of a request's "Authorization: Bearer <token>" header (RFC 6750,
// any case of "Bearer"); ErrInvalidArgument's kind when the header is missing, repeated, of
// another scheme, or its token is empty or holds other characters than visible ASCII.
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", errNoBearer
	}
	const scheme = "Bearer "
	h := values[0]
	if len(values) > 1 || len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", errBadBearer
	}
	token := strings.Trim(h[len(scheme):], " \t")
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x21 || b > 0x7e {
			return "", errBadBearer
		}
	}
	if token == "" {
		return "", errBadBearer
	}
	return token, nil
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, err := BearerToken(r)
	var state *AuthState
	if err == nil && m.principals != nil {
		state, err = m.c.Authorize(r.Context(), token, m.principals, m.authorizeOpts)
	} else if err == nil {
		state, err = m.c.Check(r.Context(), token)
	}
	if err != nil {
		if m.onError != nil {
			m.onError(r, answerFor(err).status, err)
		}
		m.c.writeError(w, err, m.realm)
		return
	}
	m.next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), state)))
}

// ExpectedScopes returns the scopes of the checker's configuration (expected_scopes), as the
// insufficient_scope challenge names them.
func (c *Checker) ExpectedScopes() []string {
	if c == nil {
		return nil
	}
	return append([]string(nil), c.scopes...)
}

// WriteError writes the answer the middleware gives for err (an error of BearerToken, Check,
// Authorize or DependentToken; see Middleware), never the library's detail, which is for logs:
// for handlers that call them themselves. Of opts, only Realm applies.
func (c *Checker) WriteError(w http.ResponseWriter, err error, opts ...MiddlewareOption) {
	m := middleware{realm: DefaultRealm}
	for _, o := range opts {
		o(&m)
	}
	c.writeError(w, err, m.realm)
}

func (c *Checker) writeError(w http.ResponseWriter, err error, realm string) {
	a, h := answerFor(err), w.Header()
	h.Del("WWW-Authenticate")
	h.Del("Retry-After")
	if a.challenge != "" {
		challenge := `Bearer realm=` + quoteParam(realm) + `, error="` + a.challenge + `"`
		if a.challenge == "insufficient_scope" {
			challenge += `, scope=` + quoteParam(strings.Join(c.ExpectedScopes(), " "))
		}
		h.Set("WWW-Authenticate", challenge)
	}
	if a.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	writeJSONError(w, a.status, a.body)
}

// answer is the contract's answer to a failure.
type answer struct {
	status    int
	challenge string // the WWW-Authenticate error, "" for none
	body      []byte // {"error": {"code", "message"}} and a newline
}

// contractAnswers are the HTTP contract's answers and fixed messages (the tests run its cases).
var contractAnswers = map[Status]answer{
	StatusInvalidArgument:     contractAnswer(StatusInvalidArgument, 401, "invalid_request", "the request has no valid bearer token"),
	StatusInactiveToken:       contractAnswer(StatusInactiveToken, 401, "invalid_token", "the token is not active"),
	StatusTokenExpired:        contractAnswer(StatusTokenExpired, 401, "invalid_token", "the token has expired or is not yet valid"),
	StatusWrongAudience:       contractAnswer(StatusWrongAudience, 401, "invalid_token", "the token is not meant for this service"),
	StatusInsufficientScope:   contractAnswer(StatusInsufficientScope, 403, "insufficient_scope", "the token lacks the scope this service requires"),
	StatusNotAuthorized:       contractAnswer(StatusNotAuthorized, 403, "", "the caller is not allowed to use this resource"),
	StatusAuthUnavailable:     contractAnswer(StatusAuthUnavailable, 503, "", "the authorization service is unavailable; try again later"),
	StatusCredentialsRejected: contractAnswer(StatusCredentialsRejected, 503, "", "the authorization service is unavailable; try again later"),
	StatusPanic:               contractAnswer(StatusPanic, 500, "", "internal error"),
}

func contractAnswer(code Status, status int, challenge, message string) answer {
	return answer{status, challenge, errorBody(code.String(), message)}
}

// answerFor is err's answer; a code the contract does not list is a 500 "internal error".
func answerFor(err error) answer {
	var e *Error
	code := StatusPanic
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		code = StatusAuthUnavailable
	}
	if a, ok := contractAnswers[code]; ok {
		return a
	}
	return contractAnswer(code, 500, "", "internal error")
}

// errorBody is {"error":{"code":…,"message":…}} and a newline (maps' keys are sorted).
func errorBody(code, message string) []byte {
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": message}})
	return append(body, '\n')
}

// quoteParam quotes an auth-param value: '"' and '\' escaped, control characters as spaces.
func quoteParam(s string) string {
	b := append(make([]byte, 0, len(s)+2), '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// WriteJSONError writes an error of your own in the middleware's shape (headers, and the body
// {"error": {"code": code, "message": message}}).
func WriteJSONError(w http.ResponseWriter, status int, code, message string) {
	writeJSONError(w, status, errorBody(code, message))
}

func writeJSONError(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
