package tokenchecker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// The bindings' HTTP contract (../contract/http.json; its "about" explains each field).
type httpContract struct {
	Realm         string                   `json:"realm"`
	RetryAfterS   int                      `json:"retry_after_s"`
	NoBearerToken contractEntry            `json:"no_bearer_token"`
	Answers       map[string]contractEntry `json:"answers"`
	Closed        string                   `json:"closed"`
	Otherwise     string                   `json:"otherwise"`
	Cases         []struct {
		Name    string `json:"name"`
		Request struct {
			Authorization *string           `json:"authorization"`
			Token         string            `json:"token"`
			Require       []string          `json:"require"`
			Fault         *fakeglobus.Fault `json:"fault"`
		} `json:"request"`
		Expect struct {
			Status          int     `json:"status"`
			Code            *string `json:"code"`
			WWWAuthenticate *string `json:"www_authenticate"`
			RetryAfter      *string `json:"retry_after"`
		} `json:"expect"`
	} `json:"cases"`
}

type contractEntry struct {
	Code       string  `json:"code"`
	Status     int     `json:"status"`
	Message    string  `json:"message"`
	Challenge  bool    `json:"challenge"`
	Error      *string `json:"error"`
	Scope      bool    `json:"scope"`
	RetryAfter bool    `json:"retry_after"`
}

// entry is the contract's answer for a body code and HTTP status: no_bearer_token's when they
// are its own, otherwise the code's.
func (c *httpContract) entry(code string, status int) (contractEntry, bool) {
	if code == c.NoBearerToken.Code && status == c.NoBearerToken.Status {
		return c.NoBearerToken, true
	}
	e, ok := c.Answers[code]
	return e, ok
}

// headers are the WWW-Authenticate and Retry-After headers of an entry (nil: absent).
func (c *httpContract) headers(e contractEntry, realm, scopes string) (wwwAuth, retryAfter *string) {
	if e.Challenge {
		s := "Bearer realm=" + strconv.Quote(realm)
		if e.Error != nil {
			s += ", error=" + strconv.Quote(*e.Error)
		}
		if e.Scope && scopes != "" {
			s += ", scope=" + strconv.Quote(scopes)
		}
		wwwAuth = &s
	}
	if e.RetryAfter {
		s := strconv.Itoa(c.RetryAfterS)
		retryAfter = &s
	}
	return wwwAuth, retryAfter
}

func loadContract(t *testing.T) *httpContract {
	t.Helper()
	b, err := os.ReadFile("../contract/http.json")
	if err != nil {
		t.Fatal(err)
	}
	var c httpContract
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("../contract/http.json: %v", err)
	}
	if len(c.Cases) == 0 || len(c.Answers) == 0 || c.NoBearerToken.Code == "" {
		t.Fatal("../contract/http.json has no cases, answers or no_bearer_token")
	}
	return &c
}

// effectiveIdentity is the contract's handler: 200 with the caller's effective identity.
var effectiveIdentity = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	s, ok := tokenchecker.FromContext(r.Context())
	if !ok {
		http.Error(w, "no AuthState in the context", http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, s.EffectiveIdentity)
})

// answer is a response as the contract sees it.
type answer struct {
	status                    int
	wwwAuth, retryAfter       *string
	contentType, cacheControl string
	code, message, body       string
}

func header(h http.Header, name string) *string {
	if v := h.Values(name); len(v) > 0 {
		s := strings.Join(v, ", ")
		return &s
	}
	return nil
}

func readAnswer(t *testing.T, status int, h http.Header, body []byte) answer {
	t.Helper()
	a := answer{status: status, wwwAuth: header(h, "WWW-Authenticate"), retryAfter: header(h, "Retry-After"),
		contentType: h.Get("Content-Type"), cacheControl: h.Get("Cache-Control"), body: string(body)}
	if status == http.StatusOK {
		return a
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || len(doc) != 1 || len(doc["error"]) != 2 {
		t.Fatalf("error body %q is not {\"error\": {\"code\", \"message\"}} (%v)", body, err)
	}
	a.code, _ = doc["error"]["code"].(string)
	a.message, _ = doc["error"]["message"].(string)
	return a
}

func str(p *string) string {
	if p == nil {
		return "<absent>"
	}
	return strconv.Quote(*p)
}

// checkAnswer compares an answer with the contract's expectations for a code.
func (c *httpContract) checkAnswer(t *testing.T, got answer, status int, code, wwwAuth, retryAfter *string) {
	t.Helper()
	if got.status != status {
		t.Errorf("status %d, want %d (body %s)", got.status, status, got.body)
	}
	if str(got.wwwAuth) != str(wwwAuth) {
		t.Errorf("WWW-Authenticate %s, want %s", str(got.wwwAuth), str(wwwAuth))
	}
	if str(got.retryAfter) != str(retryAfter) {
		t.Errorf("Retry-After %s, want %s", str(got.retryAfter), str(retryAfter))
	}
	if code == nil {
		return
	}
	if got.code != *code {
		t.Errorf("code %q, want %q", got.code, *code)
	}
	e, ok := c.entry(*code, status)
	if !ok {
		e, ok = c.Answers[c.Otherwise] // a code the contract does not list
	}
	if !ok {
		t.Fatalf("the contract has no answer for %s", *code)
	}
	if got.message != e.Message {
		t.Errorf("message %q, want the contract's %q", got.message, e.Message)
	}
	if status != e.Status {
		t.Errorf("the contract's case says %d for %s, its answer %d", status, *code, e.Status)
	}
	if got.contentType != "application/json" || got.cacheControl != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", got.contentType, got.cacheControl)
	}
}

// TestHTTPContract runs every case of the contract against the fake.
func TestHTTPContract(t *testing.T) {
	contract := loadContract(t)
	c := newChecker(t)
	var logged []error
	for _, tc := range contract.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var opts []tokenchecker.MiddlewareOption
			opts = append(opts, tokenchecker.OnError(func(_ *http.Request, _ int, err error) { logged = append(logged, err) }))
			if tc.Request.Require != nil {
				opts = append(opts, tokenchecker.RequirePrincipals(tokenchecker.AuthorizeOptions{}, tc.Request.Require...))
			}
			srv := httptest.NewServer(c.MiddlewareWith(opts...)(effectiveIdentity))
			defer srv.Close()

			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/resource", nil)
			switch {
			case tc.Request.Authorization != nil:
				req.Header.Set("Authorization", *tc.Request.Authorization)
			case tc.Request.Token == "fresh":
				req.Header.Set("Authorization", "Bearer "+newToken(t, fakeglobus.Spec{}))
			case tc.Request.Token != "":
				req.Header.Set("Authorization", "Bearer "+tc.Request.Token)
			}
			if tc.Request.Fault != nil {
				setFault(t, *tc.Request.Fault)
			}
			logged = nil
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := readAnswer(t, resp.StatusCode, resp.Header, body)
			e := tc.Expect
			contract.checkAnswer(t, got, e.Status, e.Code, e.WWWAuthenticate, e.RetryAfter)
			if e.Status == http.StatusOK {
				want := "urn:globus:auth:identity:"
				if tc.Request.Token == "tok-valid" || strings.Contains(str(tc.Request.Authorization), "tok-valid") {
					want += fakeglobus.AliceID
				}
				if !strings.HasPrefix(got.body, want) {
					t.Errorf("body %q, want the effective identity %s…", got.body, want)
				}
				if len(logged) != 0 {
					t.Errorf("OnError called for a success: %v", logged)
				}
			} else if len(logged) != 1 {
				t.Errorf("OnError called %d times", len(logged))
			}
		})
	}
}

// TestHTTPContractTables checks the Go side's constants and every answer of the contract
// (including those no case reaches with the fake: TC_CREDENTIALS_REJECTED, TC_PANIC) through
// Checker.WriteError, with another realm and two scopes.
func TestHTTPContractTables(t *testing.T) {
	contract := loadContract(t)
	if contract.Realm != tokenchecker.DefaultRealm {
		t.Errorf("DefaultRealm %q, the contract's %q", tokenchecker.DefaultRealm, contract.Realm)
	}
	if contract.RetryAfterS != tokenchecker.RetryAfterSeconds {
		t.Errorf("RetryAfterSeconds %d, the contract's %d", tokenchecker.RetryAfterSeconds, contract.RetryAfterS)
	}
	c := newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.ExpectedScopes = []string{fakeglobus.TestScope, "urn:globus:auth:scope:other:all"}
	})
	const realm = `a "b"` // quoted `"a \"b\""`, as strconv.Quote does in headers()
	scopes := fakeglobus.TestScope + " urn:globus:auth:scope:other:all"
	write := func(err error) answer {
		rec := httptest.NewRecorder()
		rec.Header().Set("WWW-Authenticate", "Basic")
		rec.Header().Set("Retry-After", "60")
		c.WriteError(rec, err, tokenchecker.Realm(realm))
		return readAnswer(t, rec.Code, rec.Header(), rec.Body.Bytes())
	}
	for name, e := range contract.Answers {
		code := tokenchecker.Status(0)
		for s := tokenchecker.Status(0); s <= tokenchecker.StatusWouldBlock; s++ {
			if s.String() == name {
				code = s
			}
		}
		if code == 0 {
			t.Errorf("the contract's code %s is unknown", name)
			continue
		}
		got := write(fmt.Errorf("wrapped: %w", &tokenchecker.Error{Code: code, Message: "internal detail"}))
		wwwAuth, retryAfter := contract.headers(e, realm, scopes)
		t.Run(name, func(t *testing.T) { contract.checkAnswer(t, got, e.Status, &name, wwwAuth, retryAfter) })
		if strings.Contains(got.body, "internal detail") {
			t.Errorf("%s: the body holds the library's detail: %s", name, got.body)
		}
	}

	// No bearer credentials: BearerToken's error for a request without an Authorization header
	// or with another scheme, wrapped or not.
	for _, h := range []string{"", "Basic dGVzdDp0ZXN0"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		_, err := tokenchecker.BearerToken(r)
		for _, err := range []error{err, fmt.Errorf("wrapped: %w", err), tokenchecker.ErrNoBearerToken} {
			got := write(err)
			wwwAuth, retryAfter := contract.headers(contract.NoBearerToken, realm, scopes)
			t.Run("no_bearer_token "+h, func(t *testing.T) {
				contract.checkAnswer(t, got, contract.NoBearerToken.Status, &contract.NoBearerToken.Code, wwwAuth, retryAfter)
			})
		}
	}

	// Failures that are not library codes.
	otherwise := contract.Answers[contract.Otherwise]
	for _, tc := range []struct {
		err  error
		code string
	}{
		{tokenchecker.ErrClosed, contract.Closed},
		{context.Canceled, contract.Closed},
		{fmt.Errorf("checking: %w", context.DeadlineExceeded), contract.Closed},
		{errors.New("something else"), contract.Otherwise},
		{&tokenchecker.Error{Code: tokenchecker.StatusInvalidConfig}, "TC_INVALID_CONFIG"},
		{&tokenchecker.Error{Code: tokenchecker.StatusWouldBlock}, "TC_WOULD_BLOCK"},
	} {
		got := write(tc.err)
		want, ok := contract.Answers[tc.code]
		if !ok {
			want = otherwise
		}
		wwwAuth, retryAfter := contract.headers(want, realm, scopes)
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) { contract.checkAnswer(t, got, want.Status, &tc.code, wwwAuth, retryAfter) })
	}
}
