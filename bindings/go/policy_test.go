package tokenchecker_test

import (
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// Compiled policies (NewPolicy, AuthorizePolicy), derived checkers (Derive) and the facts the
// binding takes from the library.

func TestPrincipalHelpers(t *testing.T) {
	if got := tokenchecker.IdentityPrincipal(fakeglobus.AliceID); got != "urn:globus:auth:identity:"+fakeglobus.AliceID {
		t.Fatal(got)
	}
	if got := tokenchecker.GroupPrincipal(fakeglobus.GroupMember); got != "urn:globus:groups:id:"+fakeglobus.GroupMember {
		t.Fatal(got)
	}
}

func TestPolicy(t *testing.T) {
	c := newChecker(t)
	alice2 := tokenchecker.IdentityPrincipal(fakeglobus.AliceID2)
	bob := tokenchecker.IdentityPrincipal(fakeglobus.BobID)
	member := tokenchecker.GroupPrincipal(fakeglobus.GroupMember)
	pending := tokenchecker.GroupPrincipal(fakeglobus.GroupPending)
	type opts = tokenchecker.AuthorizeOptions
	cases := []struct {
		name    string
		allowed []string
		opts    opts
		matched int // index into allowed; -1: ErrNotAuthorized
		groups  bool
	}{
		{"identity", []string{bob, alice2}, opts{}, 1, false},
		{"identity before group", []string{member, alice2}, opts{}, 1, false},
		{"group", []string{bob, member}, opts{}, 1, true},
		{"pending group", []string{pending}, opts{}, -1, true},
		{"public", []string{"public"}, opts{AllowPublic: true}, 0, false},
		{"public not allowed", []string{"public"}, opts{}, -1, false},
		{"all authenticated", []string{"all_authenticated_users"}, opts{AllowAllAuthenticatedUsers: true}, 0, false},
		{"nobody", nil, opts{}, -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tokenchecker.NewPolicy(tc.allowed, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.Principals(); !slices.Equal(got, tc.allowed) && len(got)+len(tc.allowed) != 0 {
				t.Fatalf("principals %q", got)
			}
			tok := newToken(t, nil)
			var matched string
			for i, source := range []string{"network", "memory", "memory"} {
				before := counters(t).Groups
				s, info, err := c.AuthorizePolicy(ctx, tok, p)
				if fetched := counters(t).Groups > before; fetched != (tc.groups && i == 0) {
					t.Fatalf("call %d: groups fetched %v", i, fetched)
				}
				if tc.matched < 0 {
					wantCode(t, err, tokenchecker.ErrNotAuthorized, tok)
					continue
				}
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if info.Matched != tc.allowed[tc.matched] || info.CacheSource != source || s.Sub != fakeglobus.AliceID ||
					s.Matched != info.Matched || s.CacheSource != "" {
					t.Fatalf("call %d: %+v %+v", i, info, s)
				}
				// Matched is the policy's own string: the same one every call.
				if i > 0 && unsafe.StringData(info.Matched) != unsafe.StringData(matched) {
					t.Fatalf("call %d: Matched is a new string", i)
				}
				matched = info.Matched
				// The state is Check's with Matched, kept with it.
				cs, err := c.Check(ctx, tok)
				if err != nil || cs.Matched != "" || cs.Sub != s.Sub || (i > 0 && cs == s) {
					t.Fatalf("call %d: Check's state %+v (%v)", i, cs, err)
				}
				if i > 0 {
					if again, _, _ := c.AuthorizePolicy(ctx, tok, p); again != s {
						t.Fatalf("call %d: another state", i)
					}
				}
			}
		})
	}

	t.Run("cached authorization allocates nothing", func(t *testing.T) {
		for _, allowed := range [][]string{{alice2}, {member}} {
			p, err := tokenchecker.NewPolicy(allowed, opts{})
			if err != nil {
				t.Fatal(err)
			}
			tok := newToken(t, nil)
			if _, _, err := c.AuthorizePolicy(ctx, tok, p); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { _, _, _ = c.AuthorizePolicy(ctx, tok, p) }); n != 0 {
				t.Fatalf("%q: %v allocations per cached authorization", allowed, n)
			}
			if n := testing.AllocsPerRun(100, func() { _, _ = c.Authorize(ctx, tok, allowed, opts{}) }); n != 0 {
				t.Fatalf("%q: %v allocations per cached Authorize", allowed, n)
			}
			p.Close()
		}
	})

	t.Run("errors", func(t *testing.T) {
		p, err := tokenchecker.NewPolicy([]string{"public"}, opts{AllowPublic: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			_, _, err := c.AuthorizePolicy(ctx, "tok-inactive", p)
			wantCode(t, err, tokenchecker.ErrInactiveToken)
		}
		_, _, err = c.AuthorizePolicy(ctx, "", p)
		wantCode(t, err, tokenchecker.ErrInvalidArgument)
		_, _, err = c.AuthorizePolicy(ctx, "tok-valid\x00", p)
		wantCode(t, err, tokenchecker.ErrInvalidArgument)
		_, _, err = c.AuthorizePolicy(ctx, "tok-valid", nil)
		wantCode(t, err, tokenchecker.ErrInvalidArgument)
		if _, err := tokenchecker.NewPolicy([]string{"bad\x00principal"}, opts{}); !errors.Is(err, tokenchecker.ErrInvalidArgument) {
			t.Fatalf("a principal with a NUL: %v", err)
		}
		p.Close()
		p.Close() // idempotent
		if _, _, err := c.AuthorizePolicy(ctx, "tok-valid", p); !errors.Is(err, tokenchecker.ErrPolicyClosed) {
			t.Fatalf("a closed policy: %v", err)
		}
		closed := newChecker(t)
		closed.Close()
		p2, _ := tokenchecker.NewPolicy([]string{"public"}, opts{AllowPublic: true})
		if _, _, err := closed.AuthorizePolicy(ctx, "tok-valid", p2); !errors.Is(err, tokenchecker.ErrClosed) {
			t.Fatalf("a closed checker: %v", err)
		}
	})

	t.Run("groups unavailable", func(t *testing.T) {
		p, err := tokenchecker.NewPolicy([]string{bob, member}, opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		tok := newToken(t, nil)
		setFault(t, fakeglobus.Fault{Endpoint: "groups", Status: 503})
		_, _, err = c.AuthorizePolicy(ctx, tok, p)
		wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok)
	})

	// With fetch_groups "eager" the state has the groups (the document path); Matched is
	// still the policy's string.
	t.Run("eager", func(t *testing.T) {
		eager := newChecker(t, func(cfg *tokenchecker.Config) { cfg.FetchGroups = "eager" })
		p, err := tokenchecker.NewPolicy([]string{bob, member}, opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		tok := newToken(t, nil)
		for i := 0; i < 2; i++ {
			s, info, err := eager.AuthorizePolicy(ctx, tok, p)
			if err != nil || info.Matched != member || !s.GroupsAvailable || !slices.Contains(s.Groups, fakeglobus.GroupMember) {
				t.Fatalf("call %d: %+v %+v %v", i, s, info, err)
			}
			if unsafe.StringData(info.Matched) != unsafe.StringData(p.Principals()[1]) {
				t.Fatal("Matched is not the policy's string")
			}
		}
	})
}

// A policy may be shared by goroutines and checkers, closed while calls run (they finish
// first, later ones fail with ErrPolicyClosed), or dropped without Close (the garbage
// collector releases it).
func TestPolicyConcurrentAndCollected(t *testing.T) {
	c1, c2 := newChecker(t), newChecker(t)
	tok := newToken(t, nil)
	member := tokenchecker.GroupPrincipal(fakeglobus.GroupMember)
	for round := 0; round < 5; round++ {
		p, err := tokenchecker.NewPolicy([]string{member}, tokenchecker.AuthorizeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := []*tokenchecker.Checker{c1, c2}[g%2]
				for i := 0; i < 200; i++ {
					_, info, err := c.AuthorizePolicy(ctx, tok, p)
					if errors.Is(err, tokenchecker.ErrPolicyClosed) {
						return
					}
					if err != nil || info.Matched != member {
						t.Errorf("%+v %v", info, err)
						return
					}
				}
			}()
		}
		if round%2 == 0 {
			time.Sleep(time.Millisecond)
			p.Close()
		}
		wg.Wait()
	}
	for i := 0; i < 100; i++ { // never closed
		if _, err := tokenchecker.NewPolicy([]string{member}, tokenchecker.AuthorizeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// Authorize keeps its compiled policies by request: many distinct requests (past the cache's
// bound) all answer right, concurrently.
func TestAuthorizeManyRequests(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	alice := tokenchecker.IdentityPrincipal(fakeglobus.AliceID)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				other := tokenchecker.IdentityPrincipal(fakeglobus.BobID + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
				allowed := []string{other, alice}
				s, err := c.Authorize(ctx, tok, allowed, tokenchecker.AuthorizeOptions{})
				if err != nil || s.Matched != alice {
					t.Errorf("request %d: %+v %v", i, s, err)
					return
				}
				if _, err := c.Authorize(ctx, tok, allowed[:1], tokenchecker.AuthorizeOptions{}); !isCode(err, tokenchecker.ErrNotAuthorized) {
					t.Errorf("request %d without alice: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Derive: a checker with other expected scopes (or audience) that shares the parent's client
// and the cache; its settings come from the library (tc_checker_info).
func TestDerive(t *testing.T) {
	parent := newChecker(t)
	other := newChecker(t, func(cfg *tokenchecker.Config) { cfg.ExpectedScopes = []string{"urn:globus:auth:scope:other:all"} })
	tok := newToken(t, nil)
	if _, err := parent.Check(ctx, tok); err != nil {
		t.Fatal(err)
	}
	openid, err := parent.Derive(tokenchecker.Rules{ExpectedScopes: []string{"openid", "x:y"}})
	if err != nil {
		t.Fatal(err)
	}
	defer openid.Close()
	both, err := parent.Derive(tokenchecker.Rules{ExpectedScopes: []string{fakeglobus.TestScope, "x:y"}, ScopeMatch: "all"})
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	if got := openid.ExpectedScopes(); !slices.Equal(got, []string{"openid", "x:y"}) {
		t.Fatalf("derived expected scopes %q", got)
	}
	if got := parent.ExpectedScopes(); !slices.Equal(got, []string{fakeglobus.TestScope}) {
		t.Fatalf("the parent's expected scopes %q", got)
	}

	n := counters(t).Introspect
	s, info, err := openid.CheckInfo(ctx, tok)
	if err != nil || info.CacheSource != "memory" || s.Sub != fakeglobus.AliceID {
		t.Fatalf("derived check: %+v %+v %v (want the parent's cached answer)", s, info, err)
	}
	if ps, _ := parent.Check(ctx, tok); ps != s {
		t.Fatal("the derived checker's state is not the memo's, which the parent's is")
	}
	_, err = both.Check(ctx, tok) // Alice's token lacks x:y
	wantCode(t, err, tokenchecker.ErrInsufficientScope, tok)
	_, err = other.Check(ctx, tok)
	wantCode(t, err, tokenchecker.ErrInsufficientScope, tok)
	if got := counters(t).Introspect; got != n {
		t.Fatalf("derived checks made %d requests", got-n)
	}
	// An audience rule; the rules of the derived checker only.
	aud, err := parent.Derive(tokenchecker.Rules{ExpectedAudience: "other-client", LeewayS: tokenchecker.Int(0)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = aud.Check(ctx, tok)
	wantCode(t, err, tokenchecker.ErrWrongAudience, tok)
	if _, err := aud.Check(ctx, "tok-wrong-aud"); err != nil {
		t.Fatal(err)
	}
	// Either may be closed first.
	parent2 := newChecker(t)
	child, err := parent2.Derive(tokenchecker.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	parent2.Close()
	if s, err := child.Check(ctx, tok); err != nil || s.Sub != fakeglobus.AliceID {
		t.Fatalf("after the parent's Close: %v", err)
	}
	aud.Close()
	child.Close()
	if _, err := child.Derive(tokenchecker.Rules{}); !errors.Is(err, tokenchecker.ErrClosed) {
		t.Fatalf("Derive of a closed checker: %v", err)
	}
	// The library refuses bad rules.
	if _, err := parent.Derive(tokenchecker.Rules{ScopeMatch: "some"}); !errors.Is(err, tokenchecker.ErrInvalidConfig) {
		t.Fatalf("a bad scope_match: %v", err)
	}
}

// Rules' JSON keys are exactly the library's rule keys; the sources CallInfo reports are the
// library's.
func TestLibraryFacts(t *testing.T) {
	lib, err := tokenchecker.LibraryInfo()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	typ := reflect.TypeFor[tokenchecker.Rules]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		keys = append(keys, name)
	}
	slices.Sort(keys)
	rule := slices.Clone(lib.RuleKeys)
	slices.Sort(rule)
	if !slices.Equal(keys, rule) {
		t.Fatalf("Rules has %q, the library %q", keys, rule)
	}
	c := newChecker(t)
	tok := newToken(t, nil)
	for i := 0; i < 2; i++ {
		_, info, err := c.CheckInfo(ctx, tok)
		if err != nil || !slices.Contains(lib.Sources, info.CacheSource) {
			t.Fatalf("source %q, the library's %q (%v)", info.CacheSource, lib.Sources, err)
		}
	}
}
