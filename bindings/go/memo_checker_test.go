package tokenchecker_test

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// The answer memo through the public API: different callers get different states, a cached
// answer (decoded from tc_answer_text) equals the network one (decoded from the result
// document), a modified result does not leak into the next call, a refetch is a new entry,
// and the memo stays within its bound.

func bobSpec() fakeglobus.Spec {
	return fakeglobus.Spec{
		"identity_set": []string{fakeglobus.BobID},
		"sub":          fakeglobus.BobID,
		"username":     "bob@example.org",
		"name":         "Bob",
		"email":        "bob@example.org",
		"exp_in":       3600,
	}
}

// comparable is a deep copy of s without what differs between two answers of one cached
// entry.
func comparable(s *tokenchecker.AuthState) tokenchecker.AuthState {
	c := *s
	c.CacheSource, c.CacheAge = "", 0
	for _, l := range []*[]string{&c.Identities, &c.Scopes, &c.Audience, &c.Groups, &c.Principals} {
		*l = slices.Clone(*l)
	}
	return c
}

func mutate(s *tokenchecker.AuthState) {
	for _, l := range [][]string{s.Identities, s.Scopes, s.Audience, s.Groups, s.Principals} {
		for i := range l {
			l[i] = "mutated"
		}
	}
	s.Identities = append(s.Identities, "appended")
	s.Sub, s.Username, s.EffectiveIdentity, s.Matched = "mutated", "mutated", "mutated", "mutated"
}

func TestMemoThroughCheck(t *testing.T) {
	c := newChecker(t)
	alice, bob := newToken(t, nil), newToken(t, bobSpec())
	first := map[string]*tokenchecker.AuthState{}
	for _, tok := range []string{alice, bob} {
		s, err := c.Check(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		first[tok] = s
	}
	if first[alice].Sub != fakeglobus.AliceID || first[bob].Sub != fakeglobus.BobID ||
		first[bob].Username != "bob@example.org" || slices.Equal(first[alice].Principals, first[bob].Principals) {
		t.Fatalf("alice %+v\nbob %+v", first[alice], first[bob])
	}
	want := map[string]tokenchecker.AuthState{alice: comparable(first[alice]), bob: comparable(first[bob])}
	for round := 0; round < 3; round++ {
		for _, tok := range []string{alice, bob} {
			s, err := c.Check(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			if s.CacheSource != "memory" || !reflect.DeepEqual(comparable(s), want[tok]) {
				t.Fatalf("round %d: cached %+v\nwant %+v", round, s, want[tok])
			}
			mutate(s)
		}
	}
	mutate(first[alice])
	if n := tokenchecker.MemoLen(c); n < 2 {
		t.Fatalf("memo entries: %d", n)
	}

	// Authorize: each matched principal is its own document.
	alice2 := "urn:globus:auth:identity:" + fakeglobus.AliceID2
	for round := 0; round < 3; round++ {
		for _, tc := range []struct {
			allowed []string
			opts    tokenchecker.AuthorizeOptions
			matched string
		}{
			{[]string{alice2}, tokenchecker.AuthorizeOptions{}, alice2},
			{[]string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true}, "public"},
		} {
			s, err := c.Authorize(ctx, alice, tc.allowed, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := comparable(s)
			got.Matched = ""
			if s.Matched != tc.matched || !reflect.DeepEqual(got, want[alice]) {
				t.Fatalf("round %d: %+v", round, s)
			}
			mutate(s)
		}
		if _, err := c.Authorize(ctx, bob, []string{alice2}, tokenchecker.AuthorizeOptions{}); !isCode(err, tokenchecker.ErrNotAuthorized) {
			t.Fatalf("bob authorized as alice: %v", err)
		}
	}

	// Failures are not memoised answers.
	for i := 0; i < 2; i++ {
		if _, err := c.Check(ctx, "tok-inactive"); !isCode(err, tokenchecker.ErrInactiveToken) {
			t.Fatalf("inactive token: %v", err)
		}
	}

	// Purge empties the memo; the next check is right all the same.
	if err := c.Purge(alice); err != nil {
		t.Fatal(err)
	}
	if n := tokenchecker.MemoLen(c); n != 0 {
		t.Fatalf("%d entries after Purge", n)
	}
	s, err := c.Check(ctx, alice)
	if err != nil || s.CacheSource != "network" {
		t.Fatalf("after Purge: %+v %v", s, err)
	}
	// A new introspection: the fake server stamps exp/nbf/iat anew (a second may have passed).
	got := comparable(s)
	got.Expiry, got.NotBefore, got.IssuedAt = want[alice].Expiry, want[alice].NotBefore, want[alice].IssuedAt
	if !reflect.DeepEqual(got, want[alice]) {
		t.Fatalf("after Purge: %+v", s)
	}
}

// A purge and refetch gives the token's answer a new id, and the memo the new answer's data.
func TestMemoRefetchHasNewID(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	cached := func(wantUsername string) uint64 {
		t.Helper()
		for _, source := range []string{"network", "memory"} {
			s, err := c.Check(ctx, tok)
			if err != nil || s.CacheSource != source || s.Username != wantUsername {
				t.Fatalf("%+v %v; want %s from %s", s, err, wantUsername, source)
			}
		}
		ids := tokenchecker.MemoIDs(c)
		if len(ids) != 1 {
			t.Fatalf("memo ids %v", ids)
		}
		return ids[0]
	}
	first := cached("alice@example.org")
	// Another answer for the same token: it is fetched anew only after the purge.
	spec := aliceSpec()
	spec["username"] = "alice-renamed@example.org"
	if err := fake.AddTokens(map[string]fakeglobus.Spec{tok: spec}); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Check(ctx, tok); err != nil || s.Username != "alice@example.org" {
		t.Fatalf("before the purge: %+v %v", s, err)
	}
	if err := c.Purge(tok); err != nil {
		t.Fatal(err)
	}
	if second := cached("alice-renamed@example.org"); second == first {
		t.Fatalf("the refetched answer has the id of the purged one, %d", first)
	}
}

// When C releases an answer the memo held (its id is in the ids C reads) but the memo has
// evicted it since, Check asks again, keeping the reference, and decodes the text.
func TestMemoEvictedBehindC(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	first, err := c.Check(ctx, tok) // network
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Check(ctx, tok); err != nil { // memory: the memo decodes, then hits
			t.Fatal(err)
		}
	}
	ids := tokenchecker.MemoIDs(c)
	tokenchecker.EvictBehindC(c)
	s, err := c.Check(ctx, tok)
	if err != nil || s.CacheSource != "memory" || !reflect.DeepEqual(comparable(s), comparable(first)) {
		t.Fatalf("%+v %v", s, err)
	}
	if again := tokenchecker.MemoIDs(c); !slices.Equal(again, ids) {
		t.Fatalf("memo ids %v, then %v", ids, again)
	}
}

func isCode(err error, want *tokenchecker.Error) bool {
	e, ok := err.(*tokenchecker.Error)
	return ok && e.Code == want.Code
}

func TestMemoBoundManyTokens(t *testing.T) {
	c := newChecker(t)
	tokenchecker.SetMemoCapacity(c, 32)
	const n = 200
	specs := map[string]fakeglobus.Spec{}
	toks := make([]string, n)
	for i := range toks {
		id := fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i)
		toks[i] = fmt.Sprintf("go-memo-bound-%d-%d", os.Getpid(), i)
		specs[toks[i]] = fakeglobus.Spec{"identity_set": []string{id}, "sub": id, "username": fmt.Sprintf("user%d@example.org", i), "exp_in": 3600}
	}
	if err := fake.AddTokens(specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tok := range toks {
			_ = fake.RemoveToken(tok)
		}
	})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 2*n; k++ {
				i := (k*7 + g*50) % n
				s, err := c.Check(ctx, toks[i])
				if err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprintf("user%d@example.org", i); s.Username != want {
					t.Errorf("token %d: username %q, want %q", i, s.Username, want)
					return
				}
				if l, max := tokenchecker.MemoLen(c), tokenchecker.MemoCap(c); l > max {
					t.Errorf("memo holds %d entries, bound %d", l, max)
					return
				}
			}
		}()
	}
	wg.Wait()
	if l := tokenchecker.MemoLen(c); l == 0 || l > tokenchecker.MemoCap(c) {
		t.Fatalf("memo holds %d entries, bound %d", l, tokenchecker.MemoCap(c))
	}
}

// A result bigger than the binding's buffer (many groups) is read from the library's memory;
// more strings than the one-allocation sizes take the general copy.
func TestMemoBigDocument(t *testing.T) {
	c := newChecker(t, func(cfg *tokenchecker.Config) { cfg.FetchGroups = "eager" })
	spec := aliceSpec()
	var groups []any
	var want []string
	for i := 0; i < 150; i++ {
		id := fmt.Sprintf("99999999-9999-4999-8999-%012d", i)
		groups = append(groups, map[string]any{"id": id, "role": "member", "status": "active"})
		want = append(want, id)
	}
	spec["groups"] = groups
	tok := newToken(t, spec)
	var first tokenchecker.AuthState
	for i := 0; i < 3; i++ {
		s, err := c.Check(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(s.Groups)
		slices.Sort(got)
		if !slices.Equal(got, want) || len(s.Principals) != 2+len(want) {
			t.Fatalf("call %d: %d groups, %d principals", i, len(s.Groups), len(s.Principals))
		}
		if i == 0 {
			first = comparable(s)
		} else if !reflect.DeepEqual(comparable(s), first) {
			t.Fatalf("call %d differs from the first", i)
		}
		mutate(s)
	}
}

// Tokens around and beyond the size the fast path copies on the C stack reach the library
// intact.
func TestLongTokens(t *testing.T) {
	c := newChecker(t)
	for _, n := range []int{1022, 1023, 1024, 1025, 5000} {
		tok := newToken(t, nil)
		long := tok + "-" + strings.Repeat("x", n-len(tok)-1)
		if err := fake.AddTokens(map[string]fakeglobus.Spec{long: aliceSpec()}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = fake.RemoveToken(long) })
		for i := 0; i < 2; i++ {
			s, err := c.Check(ctx, long)
			if err != nil || s.Sub != fakeglobus.AliceID {
				t.Fatalf("%d bytes, call %d: %+v %v", n, i, s, err)
			}
			if _, err := c.Authorize(ctx, long, []string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true}); err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			// The same token one byte shorter is another (unknown) token.
			if _, err := c.Check(ctx, long[:n-1]); !isCode(err, tokenchecker.ErrInactiveToken) {
				t.Fatalf("%d bytes, truncated: %v", n, err)
			}
		}
	}
	_, err := c.Check(ctx, strings.Repeat("y", 20000)) // over max_token_bytes
	if !isCode(err, tokenchecker.ErrInvalidArgument) {
		t.Fatalf("a 20000-byte token: %v", err)
	}
}
