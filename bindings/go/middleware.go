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

//go:generate go run ./internal/gencontract

// The HTTP contract's facts (DefaultRealm, RetryAfterSeconds, each code's status, message and
// challenge) are in contract_gen.go, generated from ../contract/http.json.

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
// says (bindings/contract/http.json, after RFC 6750 §3.1; the table in README.md), with a body
// {"error": {"code": "TC_…", "message": "<a fixed message>"}}: 401 with a bare Bearer
// challenge (no error attribute) for a request without bearer credentials (no Authorization
// header, or another scheme); 400 invalid_request for a malformed Bearer header; 401
// invalid_token for an inactive, expired or foreign token; 403 insufficient_scope (naming the
// expected scopes) for a missing scope; 403 without a challenge for a caller none of
// RequirePrincipals matched; 503 with Retry-After when Globus Auth or Groups is unavailable,
// this service's credentials are refused, the request's context ends first or the checker is
// closed; 500 for anything else.
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

// ErrNoBearerToken is BearerToken's error for a request without bearer credentials: no
// Authorization header, or one of another scheme (Basic, say; the scheme is the header's text
// up to its first space or tab). The middleware answers it 401 with a challenge without an
// error attribute (RFC 6750 §3.1), and BearerToken's other errors (a malformed Bearer header)
// 400 invalid_request: errors.Is(err, ErrNoBearerToken) tells them apart. Both are also
// errors.Is(err, ErrInvalidArgument), with StatusInvalidArgument for errors.As.
var ErrNoBearerToken error = &noBearerToken{&Error{Code: StatusInvalidArgument, Message: "no bearer credentials in the request"}}

// noBearerToken wraps the *Error of a request without bearer credentials.
type noBearerToken struct{ err *Error }

func (e *noBearerToken) Error() string { return e.err.Error() }
func (e *noBearerToken) Unwrap() error { return e.err }

// Is makes every noBearerToken match ErrNoBearerToken (and only them: *Error's Is compares
// codes, so a malformed header's error is not one).
func (e *noBearerToken) Is(target error) bool {
	_, ok := target.(*noBearerToken)
	return ok
}

const bearerHint = "send \"Authorization: Bearer <access token>\""

var (
	errNoHeader = &noBearerToken{&Error{Code: StatusInvalidArgument,
		Message: "the request has no Authorization header; " + bearerHint}}
	errOtherScheme = &noBearerToken{&Error{Code: StatusInvalidArgument,
		Message: "the Authorization header's scheme is not Bearer; " + bearerHint}}
	errRepeated = &Error{Code: StatusInvalidArgument,
		Message: "the Authorization header is repeated; send exactly one: \"Authorization: Bearer <access token>\""}
	errBadBearer = &Error{Code: StatusInvalidArgument,
		Message: "the Authorization header is malformed; " + bearerHint + ": one space after Bearer, then one token of visible ASCII characters"}
)

// BearerToken returns the token of a request's "Authorization: Bearer <token>" header (RFC 6750:
// any case of "Bearer", one space, then the token; spaces and tabs around the token are
// ignored). Its errors are of ErrInvalidArgument's kind: ErrNoBearerToken's when the header is
// missing or of another scheme, another one when it is repeated or its Bearer credentials are
// malformed (no token, a tab after the scheme, two words, a character other than visible
// ASCII). No network call, no library call: whether the token is valid is for Check to say.
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", errNoHeader
	case len(values) > 1:
		return "", errRepeated
	}
	h := values[0]
	end := strings.IndexAny(h, " \t") // the scheme is h[:end]
	if end < 0 {
		end = len(h)
	}
	if !strings.EqualFold(h[:end], "Bearer") {
		return "", errOtherScheme
	}
	if end == len(h) || h[end] != ' ' {
		return "", errBadBearer
	}
	token := strings.Trim(h[end+1:], " \t")
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
	if a.challenge {
		challenge := `Bearer realm=` + quoteParam(realm)
		if a.errorAttr != "" {
			challenge += `, error=` + quoteParam(a.errorAttr)
		}
		if scopes := c.ExpectedScopes(); a.scope && len(scopes) > 0 {
			challenge += `, scope=` + quoteParam(strings.Join(scopes, " "))
		}
		h.Set("WWW-Authenticate", challenge)
	}
	if a.retryAfter {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	writeJSONError(w, a.status, a.body)
}

// answer is the contract's answer to a failure (contract_gen.go has them all).
type answer struct {
	status     int
	message    string // the body's fixed message
	challenge  bool   // a WWW-Authenticate: Bearer realm="…" header
	errorAttr  string // its RFC 6750 error attribute, "" for none
	scope      bool   // its scope attribute: the expected scopes
	retryAfter bool   // a Retry-After: RetryAfterSeconds header
	body       []byte // {"error": {"code", "message"}} and a newline
}

func contractAnswer(code Status, status int, message string, challenge bool, errorAttr string, scope, retryAfter bool) answer {
	return answer{status, message, challenge, errorAttr, scope, retryAfter, errorBody(code.String(), message)}
}

// answerFor is err's answer: ErrNoBearerToken's, or its code's; a code the contract does not
// list answers as otherwiseStatus (500 "internal error") with that code.
func answerFor(err error) answer {
	if errors.Is(err, ErrNoBearerToken) {
		return noBearerTokenAnswer
	}
	var e *Error
	code := otherwiseStatus
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		code = closedStatus
	}
	if a, ok := contractAnswers[code]; ok {
		return a
	}
	a := contractAnswers[otherwiseStatus]
	a.body = errorBody(code.String(), a.message)
	return a
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
