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

// NewContext returns a copy of ctx carrying s, as the middleware does (handy in tests of
// handlers).
func NewContext(ctx context.Context, s *AuthState) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

// DefaultRealm is the realm of the middleware's WWW-Authenticate challenges unless Realm says
// otherwise.
const DefaultRealm = "api"

// RetryAfterSeconds is the Retry-After header of the middleware's 503 answers.
const RetryAfterSeconds = 5

// MiddlewareOption configures MiddlewareWith (and, for Realm, Checker.WriteError).
type MiddlewareOption func(*middleware)

// RequirePrincipals makes the middleware authorize (see Checker.Authorize) instead of only
// checking: callers that are none of the principals get 403 TC_NOT_AUTHORIZED.
func RequirePrincipals(opts AuthorizeOptions, principals ...string) MiddlewareOption {
	return func(m *middleware) {
		m.principals = append([]string{}, principals...)
		m.authorizeOpts = opts
	}
}

// OnError registers a function called with every error the middleware answers for, before
// the answer is written, with the HTTP status it answers; err is the error of BearerToken,
// Check or Authorize, with the library's detail (the HTTP body only has a fixed message).
// Log at least the 5xx ones: 503 with ErrCredentialsRejected is this service's
// misconfiguration (wrong client_id or client_secret), 500 a bug. Errors never contain the
// token.
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
// the request's context (FromContext). It answers failures as the bindings' HTTP contract
// says (bindings/contract/http.json; see WriteError): a JSON body
// {"error": {"code": "TC_…", "message": "<a fixed message>"}}, Content-Type
// application/json, Cache-Control no-store, and
//
//   - 401 TC_INVALID_ARGUMENT, WWW-Authenticate: Bearer realm="api", error="invalid_request":
//     no Authorization header, another scheme, an empty token, a token with spaces or other
//     characters than visible ASCII, a repeated header, or a token the library refuses (too
//     long). Without any network request except for the last;
//   - 401 TC_INACTIVE_TOKEN, TC_TOKEN_EXPIRED or TC_WRONG_AUDIENCE, error="invalid_token";
//   - 403 TC_INSUFFICIENT_SCOPE, error="insufficient_scope", scope="<the expected scopes>";
//   - 403 TC_NOT_AUTHORIZED, no WWW-Authenticate: none of RequirePrincipals matched;
//   - 503 TC_AUTH_UNAVAILABLE or TC_CREDENTIALS_REJECTED with Retry-After: 5: Globus Auth or
//     Groups unavailable, or this service's credentials refused (log it with OnError); also
//     (as TC_AUTH_UNAVAILABLE) when the request's context ends before the answer (a client
//     that went away reads nothing; a server deadline that expired is an unavailability) and
//     when the checker is closed (the service is shutting down);
//   - 500 TC_PANIC "internal error" (and any other failure, with its own code).
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

// BearerToken returns the token of a request's "Authorization: Bearer <token>" header
// (RFC 6750; the scheme is case-insensitive). The error is an *Error with code
// StatusInvalidArgument when the header is missing, repeated, of another scheme, or its token
// is empty or holds characters other than visible ASCII (a space, say).
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
		m.onError(r, answerFor(err).status, err)
	}
	m.c.writeError(w, err, m.realm)
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
// Authorize or DependentToken), as the HTTP contract says (bindings/contract/http.json, the
// list in Middleware's documentation): the status, the WWW-Authenticate challenge (with the
// checker's expected scopes for insufficient_scope), Retry-After for 503, Content-Type
// application/json, Cache-Control no-store, and the body
// {"error": {"code": "TC_…", "message": "<the contract's fixed message>"}}: never the
// library's detail, which is for logs. Of opts, only Realm applies (the middleware passes its
// own). Use it in handlers that call Check, Authorize or DependentToken themselves.
func (c *Checker) WriteError(w http.ResponseWriter, err error, opts ...MiddlewareOption) {
	m := middleware{realm: DefaultRealm}
	for _, o := range opts {
		o(&m)
	}
	c.writeError(w, err, m.realm)
}

func (c *Checker) writeError(w http.ResponseWriter, err error, realm string) {
	a := answerFor(err)
	h := w.Header()
	challenge := ""
	switch a.challenge {
	case "":
	case "insufficient_scope":
		var scopes []string
		if c != nil {
			scopes = c.scopes
		}
		challenge = `Bearer realm=` + quoteParam(realm) + `, error="insufficient_scope", scope=` +
			quoteParam(strings.Join(scopes, " "))
	default:
		challenge = `Bearer realm=` + quoteParam(realm) + `, error="` + a.challenge + `"`
	}
	if challenge != "" {
		h.Set("WWW-Authenticate", challenge)
	} else {
		h.Del("WWW-Authenticate")
	}
	if a.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", retryAfter)
	} else {
		h.Del("Retry-After")
	}
	writeJSONError(w, a.status, a.body)
}

var retryAfter = strconv.Itoa(RetryAfterSeconds)

// answer is the contract's answer to a failure.
type answer struct {
	status    int
	challenge string // the WWW-Authenticate error, "" for none
	body      []byte // {"error": {"code", "message"}} and a newline
}

// contractMessages are the fixed messages of the HTTP contract, per code
// (bindings/contract/http.json "messages"; a test compares them).
var contractMessages = map[Status]string{
	StatusInvalidArgument:     "the request has no valid bearer token",
	StatusInactiveToken:       "the token is not active",
	StatusTokenExpired:        "the token has expired or is not yet valid",
	StatusWrongAudience:       "the token is not meant for this service",
	StatusInsufficientScope:   "the token lacks the scope this service requires",
	StatusNotAuthorized:       "the caller is not allowed to use this resource",
	StatusAuthUnavailable:     "the authorization service is unavailable; try again later",
	StatusCredentialsRejected: "the authorization service is unavailable; try again later",
	StatusPanic:               "internal error",
}

// contractAnswers are the answers of the codes the contract names, bodies rendered once.
var contractAnswers = func() map[Status]answer {
	m := make(map[Status]answer, len(contractMessages))
	for code := range contractMessages {
		m[code] = newAnswer(code)
	}
	return m
}()

func newAnswer(code Status) answer {
	a := answer{status: http.StatusInternalServerError}
	switch code {
	case StatusInvalidArgument:
		a.status, a.challenge = http.StatusUnauthorized, "invalid_request"
	case StatusInactiveToken, StatusTokenExpired, StatusWrongAudience:
		a.status, a.challenge = http.StatusUnauthorized, "invalid_token"
	case StatusInsufficientScope:
		a.status, a.challenge = http.StatusForbidden, "insufficient_scope"
	case StatusNotAuthorized:
		a.status = http.StatusForbidden
	case StatusAuthUnavailable, StatusCredentialsRejected:
		a.status = http.StatusServiceUnavailable
	}
	message, ok := contractMessages[code]
	if !ok {
		message = contractMessages[StatusPanic]
	}
	a.body = errorBody(code.String(), message)
	return a
}

// answerFor maps an error of BearerToken, Check, Authorize or DependentToken to its answer.
func answerFor(err error) answer {
	var e *Error
	code := StatusPanic
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, ErrClosed):
		code = StatusAuthUnavailable
	}
	if a, ok := contractAnswers[code]; ok {
		return a
	}
	return newAnswer(code)
}

func errorBody(code, message string) []byte {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Error detail `json:"error"`
	}{detail{code, message}})
	return append(body, '\n')
}

// quoteParam renders an auth-param value as a quoted-string: double quotes and backslashes
// escaped, control characters replaced by spaces.
func quoteParam(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteJSONError writes an error answer in the middleware's shape, for errors of your own:
// status, Content-Type application/json, Cache-Control no-store and the body
// {"error": {"code": code, "message": message}}.
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
