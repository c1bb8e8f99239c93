package tokenchecker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// whoami answers the caller's username and matched principal from the request context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	s, ok := tokenchecker.FromContext(r.Context())
	if !ok {
		http.Error(w, "no AuthState in the context", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"username": s.Username, "matched": s.Matched})
})

type reply struct {
	status     int
	wwwAuth    string
	retryAfter string
	body       map[string]map[string]string
	raw        string
}

func get(t *testing.T, url string, headers ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, h := range headers {
		req.Header.Add("Authorization", h)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, wwwAuth: resp.Header.Get("WWW-Authenticate"),
		retryAfter: resp.Header.Get("Retry-After"), raw: string(b)}
	if resp.StatusCode != http.StatusOK {
		if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
			t.Fatalf("error with Content-Type %q, Cache-Control %q", ct, cc)
		}
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("error body %q: %v", b, err)
		}
		if r.body["error"]["code"] == "" || r.body["error"]["message"] == "" {
			t.Fatalf("error body %q", b)
		}
	}
	return r
}

func (r reply) code() string { return r.body["error"]["code"] }

func TestMiddleware(t *testing.T) {
	c := newChecker(t)
	srv := httptest.NewServer(c.Middleware(whoami))
	defer srv.Close()

	t.Run("no network for missing or malformed headers", func(t *testing.T) {
		before := counters(t)
		// No bearer credentials: 401 with a bare challenge (RFC 6750 §3.1).
		for _, h := range [][]string{
			nil, {"Basic dGVzdDp0ZXN0"}, {"Token tok-valid"}, {"Bearertok-valid"}, {""},
		} {
			r := get(t, srv.URL, h...)
			if r.status != 401 || r.wwwAuth != bareChallenge || r.code() != "TC_INVALID_ARGUMENT" ||
				r.body["error"]["message"] != "the request has no bearer token" {
				t.Fatalf("header %q: %+v", h, r)
			}
		}
		// Malformed bearer credentials: 400 invalid_request.
		for _, h := range [][]string{
			{"Bearer"}, {"Bearer "}, {"Bearer  "}, {"Bearer\ttok-valid"}, {"bearer\t"},
			{"Bearer two words"}, {"Bearer tok\tvalid"}, {"Bearer caf\u00e9"},
			{"Bearer tok-valid", "Bearer tok-valid"}, {"Basic dGVzdDp0ZXN0", "Bearer tok-valid"},
		} {
			r := get(t, srv.URL, h...)
			if r.status != 400 || r.wwwAuth != invalidRequest || r.code() != "TC_INVALID_ARGUMENT" ||
				r.body["error"]["message"] != "the request's bearer token is malformed" {
				t.Fatalf("header %q: %+v", h, r)
			}
		}
		if after := counters(t); after.Total() != before.Total() {
			t.Fatalf("%d network requests for requests without a usable token", after.Total()-before.Total())
		}
	})

	t.Run("valid token", func(t *testing.T) {
		for _, h := range []string{"Bearer tok-valid", "bearer  tok-valid ", "BEARER tok-valid"} {
			r := get(t, srv.URL, h)
			if r.status != 200 || !strings.Contains(r.raw, `"username":"alice@example.org"`) {
				t.Fatalf("%q: %+v", h, r)
			}
		}
	})

	t.Run("token problems", func(t *testing.T) {
		for tok, want := range map[string]struct {
			status        int
			code, wwwAuth string
		}{
			"tok-inactive":             {401, "TC_INACTIVE_TOKEN", invalidToken},
			"tok-expired":              {401, "TC_TOKEN_EXPIRED", invalidToken},
			"tok-not-yet":              {401, "TC_TOKEN_EXPIRED", invalidToken},
			"tok-wrong-aud":            {401, "TC_WRONG_AUDIENCE", invalidToken},
			"tok-wrong-scope":          {403, "TC_INSUFFICIENT_SCOPE", `Bearer realm="api", error="insufficient_scope", scope="` + fakeglobus.TestScope + `"`},
			strings.Repeat("x", 20000): {400, "TC_INVALID_ARGUMENT", invalidRequest}, // longer than max_token_bytes
		} {
			r := get(t, srv.URL, "Bearer "+tok)
			if r.status != want.status || r.wwwAuth != want.wwwAuth || r.code() != want.code || r.retryAfter != "" {
				t.Fatalf("%.20s: %+v", tok, r)
			}
			if strings.Contains(r.raw, tok) {
				t.Fatalf("the answer holds the token: %s", r.raw)
			}
		}
	})

	t.Run("auth unavailable is 503", func(t *testing.T) {
		tok := newToken(t, nil)
		setFault(t, fakeglobus.Fault{Endpoint: "introspect", Status: 503})
		r := get(t, srv.URL, "Bearer "+tok)
		if r.status != 503 || r.code() != "TC_AUTH_UNAVAILABLE" || r.wwwAuth != "" || r.retryAfter != "5" {
			t.Fatalf("%+v", r)
		}
	})
}

const (
	bareChallenge  = `Bearer realm="api"`
	invalidRequest = `Bearer realm="api", error="invalid_request"`
	invalidToken   = `Bearer realm="api", error="invalid_token"`
)

func TestMiddlewareRealm(t *testing.T) {
	c := newChecker(t)
	srv := httptest.NewServer(c.MiddlewareWith(tokenchecker.Realm("globus \"apps\""))(whoami))
	defer srv.Close()
	if r := get(t, srv.URL); r.wwwAuth != `Bearer realm="globus \"apps\""` {
		t.Fatalf("no header: %+v", r)
	}
	if r := get(t, srv.URL, "Bearer"); r.wwwAuth != `Bearer realm="globus \"apps\"", error="invalid_request"` {
		t.Fatalf("malformed: %+v", r)
	}
	if r := get(t, srv.URL, "Bearer tok-inactive"); r.wwwAuth != `Bearer realm="globus \"apps\"", error="invalid_token"` {
		t.Fatalf("inactive: %+v", r)
	}
	if r := get(t, srv.URL, "Bearer tok-wrong-scope"); r.wwwAuth != `Bearer realm="globus \"apps\"", error="insufficient_scope", scope="`+fakeglobus.TestScope+`"` {
		t.Fatalf("wrong scope: %+v", r)
	}
}

func TestExpectedScopes(t *testing.T) {
	for _, raw := range []string{
		`["a:b", " c:d "]`, `"a:b  c:d"`,
	} {
		c, err := tokenchecker.New(tokenchecker.Config{RawJSON: `{"client_id": "test-client", "client_secret": "test-secret",
			"auth_url": "` + fake.URL + `", "groups_url": "` + fake.URL + `", "verify_credentials": false, "expected_scopes": ` + raw + `}`})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ExpectedScopes(); strings.Join(got, "|") != "a:b|c:d" {
			t.Errorf("%s: %q", raw, got)
		}
		c.Close()
	}
	if got := newChecker(t).ExpectedScopes(); len(got) != 1 || got[0] != fakeglobus.TestScope {
		t.Errorf("Config: %q", got)
	}
}

func TestMiddlewareRequirePrincipals(t *testing.T) {
	c := newChecker(t)
	var logged []int
	admins := c.MiddlewareWith(
		tokenchecker.RequirePrincipals(tokenchecker.AuthorizeOptions{}, "urn:globus:groups:id:"+fakeglobus.GroupAdmin),
		tokenchecker.OnError(func(r *http.Request, status int, err error) { logged = append(logged, status) }),
	)(whoami)
	srv := httptest.NewServer(admins)
	defer srv.Close()
	r := get(t, srv.URL, "Bearer "+newToken(t, nil))
	if r.status != 200 || !strings.Contains(r.raw, `"matched":"urn:globus:groups:id:`+fakeglobus.GroupAdmin) {
		t.Fatalf("alice: %+v", r)
	}
	bob := newToken(t, fakeglobus.Spec{"identity_set": []string{fakeglobus.BobID}})
	if r := get(t, srv.URL, "Bearer "+bob); r.status != 403 || r.code() != "TC_NOT_AUTHORIZED" || r.wwwAuth != "" {
		t.Fatalf("bob: %+v", r)
	}
	if r := get(t, srv.URL, "Bearer tok-inactive"); r.status != 401 {
		t.Fatalf("inactive: %+v", r)
	}
	tok := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "groups", Status: 500})
	if r := get(t, srv.URL, "Bearer "+tok); r.status != 503 || r.code() != "TC_AUTH_UNAVAILABLE" || r.retryAfter != "5" {
		t.Fatalf("groups down: %+v", r)
	}
	if len(logged) != 3 || logged[0] != 403 || logged[1] != 401 || logged[2] != 503 {
		t.Fatalf("OnError saw %v", logged)
	}
}

func TestMiddlewareServerErrors(t *testing.T) {
	// Rejected client credentials are the service's problem: 503 with the generic message,
	// and the detail for OnError.
	bad := newChecker(t, func(cfg *tokenchecker.Config) { cfg.ClientSecret = "wrong" })
	var logged error
	srv := httptest.NewServer(bad.MiddlewareWith(tokenchecker.OnError(func(_ *http.Request, status int, err error) {
		if status == 503 {
			logged = err
		}
	}))(whoami))
	defer srv.Close()
	r := get(t, srv.URL, "Bearer "+newToken(t, nil))
	if r.status != 503 || r.code() != "TC_CREDENTIALS_REJECTED" || r.retryAfter != "5" || r.wwwAuth != "" ||
		r.body["error"]["message"] != "the authorization service is unavailable; try again later" {
		t.Fatalf("%+v", r)
	}
	if !errors.Is(logged, tokenchecker.ErrCredentialsRejected) {
		t.Fatalf("OnError got %v", logged)
	}

	// A closed checker: 503 while the service shuts down.
	closed, err := tokenchecker.New(config())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	srv2 := httptest.NewServer(closed.Middleware(whoami))
	defer srv2.Close()
	if r := get(t, srv2.URL, "Bearer tok-valid"); r.status != 503 {
		t.Fatalf("closed: %+v", r)
	}

	// The request's context ends before the check: 503.
	c := newChecker(t)
	h := c.Middleware(whoami)
	tok := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "introspect", LatencyMS: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "5" || !strings.Contains(rec.Body.String(), "TC_AUTH_UNAVAILABLE") {
		t.Fatalf("cancelled request: %d %s", rec.Code, rec.Body)
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc":        "abc",
		"bearer abc":        "abc",
		"Bearer \tabc \t":   "abc",
		"Bearer a.b-c_~+/=": "a.b-c_~+/=",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", h)
		got, err := tokenchecker.BearerToken(r)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v", h, got, err)
		}
	}
	// Errors: ErrInvalidArgument's kind, and ErrNoBearerToken's for no bearer credentials only.
	for _, tc := range []struct {
		headers  []string
		noBearer bool
		message  string
	}{
		{nil, true, "no Authorization header"},
		{[]string{""}, true, "scheme is not Bearer"},
		{[]string{"Basic dGVzdDp0ZXN0"}, true, "scheme is not Bearer"},
		{[]string{"Bearertok"}, true, "scheme is not Bearer"},
		{[]string{"Token\tabc"}, true, "scheme is not Bearer"},
		{[]string{"Bearer"}, false, "malformed"},
		{[]string{"Bearer \t "}, false, "malformed"},
		{[]string{"Bearer\tabc"}, false, "malformed"},
		{[]string{"Bearer a b"}, false, "malformed"},
		{[]string{"Bearer a\x00b"}, false, "malformed"},
		{[]string{"Bearer a\x7fb"}, false, "malformed"},
		{[]string{"Bearer abc", "Bearer abc"}, false, "repeated"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, h := range tc.headers {
			r.Header.Add("Authorization", h)
		}
		tok, err := tokenchecker.BearerToken(r)
		var e *tokenchecker.Error
		if tok != "" || !errors.Is(err, tokenchecker.ErrInvalidArgument) || !errors.As(err, &e) ||
			e.Code != tokenchecker.StatusInvalidArgument || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%q: %q, %v", tc.headers, tok, err)
		}
		if errors.Is(err, tokenchecker.ErrNoBearerToken) != tc.noBearer {
			t.Errorf("%q: errors.Is(%v, ErrNoBearerToken) = %t", tc.headers, err, !tc.noBearer)
		}
	}
	if errors.Is(tokenchecker.ErrInvalidArgument, tokenchecker.ErrNoBearerToken) ||
		!errors.Is(tokenchecker.ErrNoBearerToken, tokenchecker.ErrInvalidArgument) {
		t.Error("ErrNoBearerToken is a kind of ErrInvalidArgument, not the reverse")
	}
}

func TestFromContext(t *testing.T) {
	if _, ok := tokenchecker.FromContext(context.Background()); ok {
		t.Fatal("found a state in an empty context")
	}
	s := &tokenchecker.AuthState{Sub: "x"}
	if got, ok := tokenchecker.FromContext(tokenchecker.NewContext(context.Background(), s)); !ok || got != s {
		t.Fatal("NewContext/FromContext")
	}
}
