package tokenchecker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

var ctx = context.Background()

func wantCode(t *testing.T, err error, sentinel *tokenchecker.Error, secrets ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want %v", err, sentinel.Code)
	}
	var tcErr *tokenchecker.Error
	if !errors.As(err, &tcErr) || tcErr.Code != sentinel.Code {
		t.Fatalf("errors.As: %#v", err)
	}
	if tcErr.Message == "" {
		t.Fatalf("empty message: %#v", tcErr)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("the error %q holds a secret %q", err, s)
		}
	}
}

func TestVersionAndStatusNames(t *testing.T) {
	if v := tokenchecker.Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("Version() = %q", v)
	}
	// Every value the C ABI defines (0..=11), and unknown ones: the binding's names are the
	// library's.
	for _, v := range []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99, 1 << 31} {
		s := tokenchecker.Status(v)
		if lib, got := tokenchecker.StatusName(s), s.String(); got != lib {
			t.Errorf("status %d: the library says %s, the binding %s", v, lib, got)
		}
	}
	if got := tokenchecker.StatusName(99); got != "TC_UNKNOWN" {
		t.Errorf("StatusName(99) = %s", got)
	}
	// Each constant has the value of its C name, and the library has no status the binding
	// lacks (tc_library_info's statuses).
	lib, err := tokenchecker.LibraryInfo()
	if err != nil {
		t.Fatal(err)
	}
	constants := []tokenchecker.Status{tokenchecker.StatusOK, tokenchecker.StatusInvalidArgument,
		tokenchecker.StatusInvalidConfig, tokenchecker.StatusInactiveToken, tokenchecker.StatusInsufficientScope,
		tokenchecker.StatusWrongAudience, tokenchecker.StatusTokenExpired, tokenchecker.StatusNotAuthorized,
		tokenchecker.StatusCredentialsRejected, tokenchecker.StatusAuthUnavailable, tokenchecker.StatusPanic,
		tokenchecker.StatusWouldBlock}
	if len(lib.Statuses) != len(constants) {
		t.Errorf("the library has %d statuses, the binding %d: %v", len(lib.Statuses), len(constants), lib.Statuses)
	}
	for _, s := range constants {
		if name := tokenchecker.StatusName(s); lib.Statuses[name] != s || name == "TC_UNKNOWN" {
			t.Errorf("%s is %d, which the library calls %s (%d)", s, uint32(s), name, lib.Statuses[name])
		}
	}
	if lib.Version != tokenchecker.Version() || lib.ABIVersion != tokenchecker.LibraryABIVersion() {
		t.Errorf("library info %+v", lib)
	}
	// The log levels too: each of the library's is the binding's constant of that name.
	levels := []tokenchecker.LogLevel{tokenchecker.LogOff, tokenchecker.LogError, tokenchecker.LogWarn,
		tokenchecker.LogInfo, tokenchecker.LogDebug}
	if len(lib.LogLevels) != len(levels) {
		t.Errorf("the library has log levels %v", lib.LogLevels)
	}
	for _, l := range levels {
		if lib.LogLevels[l.String()] != l {
			t.Errorf("log level %s is %d, the library's %d", l, uint32(l), lib.LogLevels[l.String()])
		}
	}
}

func TestErrorsIsAs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &tokenchecker.Error{Code: tokenchecker.StatusInactiveToken, Message: "gone"})
	if !errors.Is(err, tokenchecker.ErrInactiveToken) {
		t.Fatal("errors.Is by code failed")
	}
	if errors.Is(err, tokenchecker.ErrTokenExpired) || errors.Is(err, tokenchecker.ErrClosed) {
		t.Fatal("errors.Is matched another kind")
	}
	var tcErr *tokenchecker.Error
	if !errors.As(err, &tcErr) || tcErr.Code != tokenchecker.StatusInactiveToken || tcErr.Message != "gone" {
		t.Fatalf("errors.As: %#v", tcErr)
	}
	msg := err.Error()
	if !strings.Contains(msg, "TC_INACTIVE_TOKEN") || !strings.Contains(msg, "new access token") {
		t.Fatalf("message lacks the code or the advice: %q", msg)
	}
	all := []*tokenchecker.Error{
		tokenchecker.ErrInvalidArgument, tokenchecker.ErrInvalidConfig, tokenchecker.ErrInactiveToken,
		tokenchecker.ErrInsufficientScope, tokenchecker.ErrWrongAudience, tokenchecker.ErrTokenExpired,
		tokenchecker.ErrNotAuthorized, tokenchecker.ErrCredentialsRejected, tokenchecker.ErrAuthUnavailable,
		tokenchecker.ErrPanic, tokenchecker.ErrWouldBlock,
	}
	for i, a := range all {
		if a.Code != tokenchecker.Status(i+1) {
			t.Errorf("sentinel %d has code %v", i+1, a.Code)
		}
		for j, b := range all {
			if errors.Is(a, b) != (i == j) {
				t.Errorf("errors.Is(%v, %v) = %v", a.Code, b.Code, i != j)
			}
		}
	}
}

func TestConfigJSON(t *testing.T) {
	cfg := tokenchecker.Config{
		ClientID:       "id",
		ClientSecret:   "s3cret",
		ExpectedScopes: []string{"a", "b"},
		LeewayS:        tokenchecker.Int(0),
		MaxRetries:     tokenchecker.Int(0),
		FetchGroups:    "eager",
		CacheConfig: &tokenchecker.CacheConfig{
			Backend: "memory",
			Timeout: 1500 * time.Millisecond,
			Extra:   map[string]any{"max_entries": 10, "backend": "redis"},
		},
	}
	doc, err := cfg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"client_id": "id", "client_secret": "s3cret", "expected_scopes": []any{"a", "b"},
		"leeway_s": 0.0, "max_retries": 0.0, "fetch_groups": "eager",
		"cache_config": map[string]any{"backend": "memory", "timeout": 1.5, "max_entries": 10.0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("config JSON\n got %v\nwant %v", got, want)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg); strings.Contains(s, "s3cret") {
		t.Fatalf("formatting a Config shows its secret: %s", s)
	}
	raw := tokenchecker.Config{ClientID: "ignored", RawJSON: `{"x":1}`}
	if doc, _ := raw.JSON(); doc != `{"x":1}` {
		t.Fatalf("RawJSON not verbatim: %s", doc)
	}
	if got := tokenchecker.SplitScopes(" a,b  c,,"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("SplitScopes: %q", got)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	cases := map[string]tokenchecker.Config{
		"unknown key":    {RawJSON: `{"client_id":"c","client_secret":"s","expected_scopes":["x"],"colour":"red"}`},
		"not JSON":       {RawJSON: `{`},
		"no scopes":      {ClientID: "c", ClientSecret: "s"},
		"bad scopeMatch": {ClientID: "c", ClientSecret: "s", ExpectedScopes: []string{"x"}, ScopeMatch: "some"},
		"NUL in raw":     {RawJSON: "{\"client_id\":\"c\x00\"}"},
		"bad backend": {ClientID: "c", ClientSecret: "s", ExpectedScopes: []string{"x"},
			CacheConfig: &tokenchecker.CacheConfig{Backend: "floppy"}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := tokenchecker.New(cfg)
			if c != nil {
				t.Fatal("got a checker")
			}
			wantCode(t, err, tokenchecker.ErrInvalidConfig)
		})
	}
	_, err := tokenchecker.New(cases["unknown key"])
	if !strings.Contains(err.Error(), "colour") {
		t.Fatalf("the error does not name the unknown key: %v", err)
	}
}

func TestNewVerifiesCredentials(t *testing.T) {
	cfg := config()
	cfg.VerifyCredentials = nil // default: verify
	c, err := tokenchecker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg.ClientSecret = "wrong-secret"
	_, err = tokenchecker.New(cfg)
	wantCode(t, err, tokenchecker.ErrCredentialsRejected, "wrong-secret")

	// Without the probe, rejected credentials show on the first check.
	cfg.VerifyCredentials = tokenchecker.Bool(false)
	c, err = tokenchecker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Check(ctx, newToken(t, nil))
	wantCode(t, err, tokenchecker.ErrCredentialsRejected, "wrong-secret")
}

func TestUnreachableServer(t *testing.T) {
	c := newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.AuthURL = "http://127.0.0.1:1" // nothing listens there
		cfg.VerifyCredentials = nil        // an unreachable server must not stop New
		cfg.ConnectTimeoutMS = 500
		cfg.MaxRetries = tokenchecker.Int(0)
	})
	_, err := c.Check(ctx, "go-unreachable-token")
	wantCode(t, err, tokenchecker.ErrAuthUnavailable)
}

func TestCheckValid(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	before := time.Now()
	s, info, err := c.CheckInfo(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active || s.Sub != fakeglobus.AliceID ||
		s.EffectiveIdentity != "urn:globus:auth:identity:"+fakeglobus.AliceID ||
		!slices.Equal(s.Identities, []string{fakeglobus.AliceID, fakeglobus.AliceID2}) ||
		s.Username != "alice@example.org" || s.Name != "Alice" || s.Email != "alice@example.org" ||
		s.ClientID != fakeglobus.ClientID || !slices.Contains(s.Scopes, fakeglobus.TestScope) ||
		!slices.Equal(s.Audience, []string{fakeglobus.ClientID}) {
		t.Fatalf("unexpected state %+v", s)
	}
	if d := s.Expiry.Sub(before); d < 3590*time.Second || d > 3610*time.Second {
		t.Fatalf("Expiry %v is not an hour ahead", s.Expiry)
	}
	if s.NotBefore.IsZero() || s.IssuedAt.IsZero() || s.NotBefore.After(before) {
		t.Fatalf("NotBefore %v IssuedAt %v", s.NotBefore, s.IssuedAt)
	}
	if s.Groups != nil || s.GroupsAvailable || s.GroupsStatus != "not_fetched" || s.GroupsError != "" {
		t.Fatalf("groups fetched on a lazy check: %+v", s)
	}
	wantPrincipals := []string{"urn:globus:auth:identity:" + fakeglobus.AliceID, "urn:globus:auth:identity:" + fakeglobus.AliceID2}
	if !slices.Equal(s.Principals, wantPrincipals) || !s.HasPrincipal(wantPrincipals[1]) || s.HasPrincipal("public") {
		t.Fatalf("principals %q", s.Principals)
	}
	if info.CacheSource != "network" || info.Matched != "" || s.CacheSource != "" || s.Matched != "" {
		t.Fatalf("first check: %+v, state's source %q matched %q", info, s.CacheSource, s.Matched)
	}
	n := counters(t).Introspect
	s2, info2, err := c.CheckInfo(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if info2.CacheSource != "memory" || info2.CacheAge < 0 || s2.Sub != s.Sub {
		t.Fatalf("second check: %+v %+v", s2, info2)
	}
	// The cached answer's state is the memo's, the same for every call: Check of a cached
	// token allocates nothing.
	if s3, err := c.Check(ctx, tok); err != nil || s3 != s2 || !tokenchecker.MemoHas(s2) {
		t.Fatalf("third check: %p, second %p (%v)", s3, s2, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = c.Check(ctx, tok) }); allocs != 0 {
		t.Fatalf("a cached Check allocates %v times", allocs)
	}
	if got := counters(t).Introspect; got != n {
		t.Fatalf("a cached check made %d requests", got-n)
	}
}

// An active token without an identity set is valid and says so: no identities (not
// ErrInactiveToken).
func TestNoIdentitySet(t *testing.T) {
	c := newChecker(t)
	s, err := c.Check(ctx, "tok-no-identities")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active || len(s.Identities) != 0 {
		t.Fatalf("unexpected state %+v", s)
	}
}

func TestCheckErrors(t *testing.T) {
	c := newChecker(t)
	cases := []struct {
		token string
		want  *tokenchecker.Error
	}{
		{"tok-inactive", tokenchecker.ErrInactiveToken},
		{"go-never-issued-token", tokenchecker.ErrInactiveToken},
		{"tok-wrong-scope", tokenchecker.ErrInsufficientScope},
		{"tok-wrong-aud", tokenchecker.ErrWrongAudience},
		{"tok-expired", tokenchecker.ErrTokenExpired},
		{"tok-not-yet", tokenchecker.ErrTokenExpired},
		{"", tokenchecker.ErrInvalidArgument},
		{"two words", tokenchecker.ErrInvalidArgument},
		{"caf\u00e9", tokenchecker.ErrInvalidArgument},
		{"bad\xff\xfeutf8", tokenchecker.ErrInvalidArgument},
		{"tok-valid\x00suffix", tokenchecker.ErrInvalidArgument}, // would be checked as tok-valid
		{strings.Repeat("x", 16*1024+1), tokenchecker.ErrInvalidArgument},
	}
	for _, tc := range cases {
		name := tc.token
		if len(name) > 20 {
			name = name[:20]
		}
		t.Run(name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // from the network, then from the cache
				s, err := c.Check(ctx, tc.token)
				if s != nil {
					t.Fatalf("got a state %+v", s)
				}
				secret := tc.token
				if len(secret) < 4 {
					secret = ""
				}
				wantCode(t, err, tc.want, secret)
			}
		})
	}
}

func TestScopeMatchAllAndAudience(t *testing.T) {
	all := newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.ExpectedScopes = []string{fakeglobus.TestScope, "openid"}
		cfg.ScopeMatch = "all"
	})
	if _, err := all.Check(ctx, newToken(t, nil)); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, fakeglobus.Spec{"scope": fakeglobus.TestScope})
	_, err := all.Check(ctx, tok)
	wantCode(t, err, tokenchecker.ErrInsufficientScope, tok)

	aud := newChecker(t, func(cfg *tokenchecker.Config) { cfg.ExpectedAudience = "other-client" })
	if _, err := aud.Check(ctx, "tok-wrong-aud"); err != nil {
		t.Fatal(err)
	}
}

func TestEagerGroups(t *testing.T) {
	c := newChecker(t, func(cfg *tokenchecker.Config) { cfg.FetchGroups = "eager" })
	tok := newToken(t, nil)
	for i := 0; i < 2; i++ {
		s, err := c.Check(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(s.Groups)
		if !s.GroupsAvailable || s.GroupsStatus != "available" ||
			!slices.Equal(s.Groups, []string{fakeglobus.GroupMember, fakeglobus.GroupAdmin}) {
			t.Fatalf("groups %+v (status %s, %s)", s.Groups, s.GroupsStatus, s.GroupsError)
		}
		if !s.HasPrincipal("urn:globus:groups:id:"+fakeglobus.GroupAdmin) ||
			s.HasPrincipal("urn:globus:groups:id:"+fakeglobus.GroupPending) {
			t.Fatalf("principals %q", s.Principals)
		}
	}

	// Groups unavailable: the check still succeeds and says why.
	tok = newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "groups", Status: 500})
	s, err := c.Check(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if s.GroupsAvailable || s.GroupsStatus != "unavailable" || s.GroupsError == "" || s.Groups != nil {
		t.Fatalf("groups with a failing Groups API: %+v", s)
	}
}

func TestAuthorize(t *testing.T) {
	c := newChecker(t)
	alice := "urn:globus:auth:identity:" + fakeglobus.AliceID2
	bob := "urn:globus:auth:identity:" + fakeglobus.BobID
	member := "urn:globus:groups:id:" + fakeglobus.GroupMember
	pending := "urn:globus:groups:id:" + fakeglobus.GroupPending
	type opts = tokenchecker.AuthorizeOptions
	cases := []struct {
		name      string
		allowed   []string
		opts      opts
		matched   string
		err       *tokenchecker.Error
		wantGroup bool
	}{
		{"identity", []string{bob, alice}, opts{}, alice, nil, false},
		{"group", []string{bob, member}, opts{}, member, nil, true},
		{"pending group", []string{pending}, opts{}, "", tokenchecker.ErrNotAuthorized, true},
		{"public", []string{"public"}, opts{AllowPublic: true}, "public", nil, false},
		{"public not allowed", []string{"public"}, opts{}, "", tokenchecker.ErrNotAuthorized, false},
		{"all authenticated", []string{"all_authenticated_users"}, opts{AllowAllAuthenticatedUsers: true}, "all_authenticated_users", nil, false},
		{"nobody", nil, opts{}, "", tokenchecker.ErrNotAuthorized, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := newToken(t, nil)
			for i, cached := range []bool{false, true} {
				before := counters(t).Groups
				s, err := c.Authorize(ctx, tok, tc.allowed, tc.opts)
				if fetched := counters(t).Groups > before; fetched != (tc.wantGroup && !cached) {
					t.Fatalf("cached %v: groups fetched: %v, want %v", cached, fetched, tc.wantGroup && !cached)
				}
				if tc.err != nil {
					wantCode(t, err, tc.err, tok)
					continue
				}
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if s.Matched != tc.matched || s.Sub != fakeglobus.AliceID {
					t.Fatalf("cached %v: matched %q, want %q", cached, s.Matched, tc.matched)
				}
				// The state carries no groups (fetch_groups "lazy"): Matched names the group.
				if s.Groups != nil || s.GroupsStatus != "not_fetched" {
					t.Fatalf("groups %v (%s)", s.Groups, s.GroupsStatus)
				}
				if s.CacheSource != "" || s.CacheAge != 0 { // shared: CallInfo has them
					t.Fatalf("cached %v: source %q", cached, s.CacheSource)
				}
			}
		})
	}

	t.Run("token errors", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			_, err := c.Authorize(ctx, "tok-inactive", []string{"public"}, opts{AllowPublic: true})
			wantCode(t, err, tokenchecker.ErrInactiveToken)
			_, err = c.Authorize(ctx, "tok-expired", []string{member}, opts{})
			wantCode(t, err, tokenchecker.ErrTokenExpired)
		}
		_, err := c.Authorize(ctx, "", []string{"public"}, opts{})
		wantCode(t, err, tokenchecker.ErrInvalidArgument)
		_, err = c.Authorize(ctx, "tok-valid", []string{"bad\x00principal"}, opts{})
		if err == nil {
			// a NUL inside JSON is escaped, so this is a valid (unmatched) principal
			t.Fatal("a principal with a NUL matched")
		}
	})

	t.Run("groups unavailable", func(t *testing.T) {
		tok := newToken(t, nil)
		setFault(t, fakeglobus.Fault{Endpoint: "groups", Status: 503})
		_, err := c.Authorize(ctx, tok, []string{bob, member}, opts{})
		wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok)
		// an identity still matches without groups
		s, err := c.Authorize(ctx, tok, []string{alice, member}, opts{})
		if err != nil || s.Matched != alice {
			t.Fatalf("%+v %v", s, err)
		}
	})
}

func TestDependentToken(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	d, err := c.DependentToken(ctx, tok, fakeglobus.TransferScope)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.AccessToken, "dep-") || d.Scope != fakeglobus.TransferScope ||
		d.ResourceServer != "transfer.api.globus.org" || !strings.EqualFold(d.TokenType, "bearer") {
		t.Fatalf("dependent token %+v", d)
	}
	if d.ExpiresIn < 47*time.Hour || d.ExpiresIn > 48*time.Hour || time.Until(d.ExpiresAt) < 47*time.Hour {
		t.Fatalf("expiry %v / %v", d.ExpiresIn, d.ExpiresAt)
	}
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%v %+v %#v %s", *d, *d, *d, d)} {
		if strings.Contains(s, d.AccessToken) {
			t.Fatalf("formatting shows the access token: %s", s)
		}
	}
	// By resource server name, from the cache: the same token.
	n := counters(t).DependentToken
	d2, err := c.DependentToken(ctx, tok, "transfer.api.globus.org")
	if err != nil {
		t.Fatal(err)
	}
	if d2.AccessToken != d.AccessToken || counters(t).DependentToken != n {
		t.Fatal("the dependent token was not cached")
	}
	_, err = c.DependentToken(ctx, tok, "urn:globus:auth:scope:nothing:all")
	wantCode(t, err, tokenchecker.ErrNotAuthorized, tok)
	_, err = c.DependentToken(ctx, tok, " ")
	wantCode(t, err, tokenchecker.ErrInvalidArgument, tok)
	_, err = c.DependentToken(ctx, tok, "scope\x00")
	wantCode(t, err, tokenchecker.ErrInvalidArgument, tok)
	for i := 0; i < 2; i++ {
		_, err = c.DependentToken(ctx, "tok-inactive", fakeglobus.TransferScope)
		wantCode(t, err, tokenchecker.ErrInactiveToken)
	}
	tok2 := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "dependent_token", Status: 500})
	_, err = c.DependentToken(ctx, tok2, fakeglobus.TransferScope)
	wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok2)
}

func TestPurge(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	source := func() string {
		t.Helper()
		_, info, err := c.CheckInfo(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		return info.CacheSource
	}
	if got := source() + " " + source(); got != "network memory" {
		t.Fatalf("sources %s", got)
	}
	if err := c.Purge(tok); err != nil {
		t.Fatal(err)
	}
	if got := source(); got != "network" {
		t.Fatalf("after Purge: %s", got)
	}
	if err := c.PurgeIdentity(fakeglobus.AliceID2); err != nil {
		t.Fatal(err)
	}
	if got := source(); got != "network" {
		t.Fatalf("after PurgeIdentity: %s", got)
	}
	if err := c.PurgeIdentity("urn:globus:auth:identity:" + fakeglobus.AliceID); err != nil {
		t.Fatal(err)
	}
	if got := source(); got != "network" {
		t.Fatalf("after PurgeIdentity(principal): %s", got)
	}

	// Revocation: the server forgets the token; after a purge the next check knows.
	if err := fake.RemoveToken(tok); err != nil {
		t.Fatal(err)
	}
	if got := source(); got != "memory" {
		t.Fatalf("before the purge: %s", got)
	}
	if err := c.Purge(tok); err != nil {
		t.Fatal(err)
	}
	_, err := c.Check(ctx, tok)
	wantCode(t, err, tokenchecker.ErrInactiveToken, tok)

	if err := c.Purge("never-seen-token"); err != nil {
		t.Fatalf("purging an unknown token: %v", err)
	}
	wantCode(t, c.Purge(""), tokenchecker.ErrInvalidArgument)
	wantCode(t, c.Purge("a\x00b"), tokenchecker.ErrInvalidArgument)
	wantCode(t, c.PurgeIdentity(""), tokenchecker.ErrInvalidArgument)
}

func TestStats(t *testing.T) {
	c := newChecker(t)
	before, err := tokenchecker.Stats()
	if err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, nil)
	for i := 0; i < 3; i++ {
		if _, err := c.Check(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	after, err := tokenchecker.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.Checks < before.Checks+3 || after.Hits < before.Hits+2 ||
		after.Requests.Introspect < before.Requests.Introspect+1 || after.Misses < before.Misses+1 {
		t.Fatalf("counters did not move: before %+v after %+v", before, after)
	}
	if after.Cache.Backend != "memory" || after.Cache.Timeout <= 0 || after.Cache.LocalEntries == 0 {
		t.Fatalf("cache %+v", after.Cache)
	}
	if _, ok := after.Raw["requests"].(map[string]any); !ok {
		t.Fatalf("raw %v", after.Raw)
	}
}

func TestCacheConfigReplacesCache(t *testing.T) {
	before, _ := tokenchecker.Stats()
	newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.CacheConfig = &tokenchecker.CacheConfig{Backend: "memory", Timeout: 7 * time.Second,
			Extra: map[string]any{"max_entries": 5000}}
	})
	after, _ := tokenchecker.Stats()
	if after.Cache.Timeout != 7*time.Second || after.CacheResets != before.CacheResets+1 {
		t.Fatalf("cache not replaced: %+v", after.Cache)
	}
	// Back to the default for the other tests.
	newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.CacheConfig = &tokenchecker.CacheConfig{}
	})
	if s, _ := tokenchecker.Stats(); s.Cache.Timeout != 30*time.Second {
		t.Fatalf("cache timeout %v", s.Cache.Timeout)
	}
}

func TestAuthUnavailable(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "introspect", Status: 503, Body: `{"error":"busy"}`})
	_, err := c.Check(ctx, tok)
	wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok)
	// Failures are not cached: once the server is back, the token checks.
	if err := fake.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	tok2 := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "introspect", Mode: "garbage"})
	_, err = c.Check(ctx, tok2)
	wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok2)
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	c, err := tokenchecker.New(config())
	if err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, nil)
	if _, err := c.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["Check"] = c.Check(ctx, tok)
	_, checks["Authorize"] = c.Authorize(ctx, tok, []string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true})
	_, checks["DependentToken"] = c.DependentToken(ctx, tok, fakeglobus.TransferScope)
	checks["Purge"] = c.Purge(tok)
	checks["PurgeIdentity"] = c.PurgeIdentity(fakeglobus.AliceID)
	for name, err := range checks {
		if !errors.Is(err, tokenchecker.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}

	// A zero Checker (not from New) behaves as a closed one instead of crashing.
	var zero tokenchecker.Checker
	if _, err := zero.Check(ctx, tok); !errors.Is(err, tokenchecker.ErrClosed) {
		t.Errorf("zero Checker: %v", err)
	}
	if err := zero.Close(); err != nil {
		t.Error(err)
	}
}

func TestContextCancellation(t *testing.T) {
	c := newChecker(t)
	setFault(t, fakeglobus.Fault{Endpoint: "all", LatencyMS: 2000})
	calls := map[string]func(context.Context, string) error{
		"Check": func(ctx context.Context, tok string) error {
			_, err := c.Check(ctx, tok)
			return err
		},
		"Authorize": func(ctx context.Context, tok string) error {
			_, err := c.Authorize(ctx, tok, []string{"urn:globus:groups:id:" + fakeglobus.GroupMember}, tokenchecker.AuthorizeOptions{})
			return err
		},
		"DependentToken": func(ctx context.Context, tok string) error {
			_, err := c.DependentToken(ctx, tok, fakeglobus.TransferScope)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			tok := newToken(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := call(ctx, tok)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
			if elapsed > 1500*time.Millisecond {
				t.Fatalf("took %v with a 100 ms deadline and a 2 s server", elapsed)
			}

			// An already cancelled context is reported at once when the answer isn't cached.
			cctx, ccancel := context.WithCancel(context.Background())
			ccancel()
			err = call(cctx, newToken(t, nil))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled context: got %v", err)
			}
		})
	}
}

func TestAbandonedCheckStillCaches(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	setFault(t, fakeglobus.Fault{Endpoint: "introspect", LatencyMS: 300})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.Check(cctx, tok); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	// The native check goes on and caches its answer; a later check coalesces or hits.
	_, info, err := c.CheckInfo(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if info.CacheSource == "network" {
		t.Fatalf("the abandoned check's answer was not reused (source %s)", info.CacheSource)
	}
}

func TestABIVersionMatches(t *testing.T) {
	if err := tokenchecker.CheckABI(); err != nil {
		t.Fatal(err)
	}
}
