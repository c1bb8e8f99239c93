package tokenchecker_test

import (
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// The answer memo through the public API: a cached answer's state (built from
// tc_answer_fields) is the memo's, shared by every call, and equals the library's result
// document's (decoded with encoding/json), escapes and non-ASCII included; a refetch is a new
// entry; a small TOKENCHECKER_MEMO_BYTES, or none, still answers right; the memo's counted
// bytes cover what its entries hold in the Go heap.

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
	want := map[string]tokenchecker.AuthState{alice: *first[alice], bob: *first[bob]}
	for round := 0; round < 3; round++ {
		for _, tok := range []string{alice, bob} {
			s, info, err := c.CheckInfo(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			if info.CacheSource != "memory" || !reflect.DeepEqual(*s, want[tok]) || !tokenchecker.MemoHas(s) {
				t.Fatalf("round %d: cached %+v %+v\nwant %+v", round, s, info, want[tok])
			}
			if round > 0 && s != first[tok] && !tokenchecker.MemoHas(first[tok]) {
				t.Fatalf("round %d: another state, though the memo still holds the first", round)
			}
		}
	}

	// Authorize: the state with the matched principal, one per principal, shared too; the
	// check's state is untouched.
	alice2 := tokenchecker.IdentityPrincipal(fakeglobus.AliceID2)
	authorized := map[string]*tokenchecker.AuthState{}
	for round := 0; round < 3; round++ {
		for _, tc := range []struct {
			allowed []string
			opts    tokenchecker.AuthorizeOptions
			matched string
		}{
			{[]string{alice2}, tokenchecker.AuthorizeOptions{}, alice2},
			{[]string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true}, "public"},
			{[]string{"urn:globus:auth:identity:nobody", alice2}, tokenchecker.AuthorizeOptions{}, alice2},
		} {
			s, err := c.Authorize(ctx, alice, tc.allowed, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := *s
			got.Matched = ""
			if s.Matched != tc.matched || s.CacheSource != "" || !reflect.DeepEqual(got, want[alice]) || tokenchecker.MemoHas(s) {
				t.Fatalf("round %d: %+v", round, s)
			}
			if prev, ok := authorized[tc.matched]; ok && prev != s {
				t.Fatalf("round %d: another state for %s", round, tc.matched)
			}
			authorized[tc.matched] = s
		}
		if _, err := c.Authorize(ctx, bob, []string{alice2}, tokenchecker.AuthorizeOptions{}); !isCode(err, tokenchecker.ErrNotAuthorized) {
			t.Fatalf("bob authorized as alice: %v", err)
		}
	}
	if s, _ := c.Check(ctx, alice); s.Matched != "" || s.CacheSource != "" || !reflect.DeepEqual(*s, want[alice]) {
		t.Fatalf("an authorization changed the memo's state: %+v", s)
	}

	// Failures are not memoised answers.
	for i := 0; i < 2; i++ {
		if _, err := c.Check(ctx, "tok-inactive"); !isCode(err, tokenchecker.ErrInactiveToken) {
			t.Fatalf("inactive token: %v", err)
		}
	}

	// After a purge the token's answer is fetched anew: a new answer, a new state.
	if err := c.Purge(alice); err != nil {
		t.Fatal(err)
	}
	s, info, err := c.CheckInfo(ctx, alice)
	if err != nil || info.CacheSource != "network" || s == first[alice] {
		t.Fatalf("after Purge: %+v %+v %v", s, info, err)
	}
	got, w := *s, *first[alice]
	got.Expiry, got.NotBefore, got.IssuedAt = w.Expiry, w.NotBefore, w.IssuedAt // stamped anew
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("after Purge: %+v", s)
	}
}

// A purge and refetch gives the token's answer a new id: the memo's state is the new answer's.
func TestMemoRefetchIsNewEntry(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	cached := func(wantUsername string) *tokenchecker.AuthState {
		t.Helper()
		var states []*tokenchecker.AuthState
		for _, source := range []string{"network", "memory"} {
			s, info, err := c.CheckInfo(ctx, tok)
			if err != nil || info.CacheSource != source || s.Username != wantUsername {
				t.Fatalf("%+v %v; want %s from %s", s, err, wantUsername, source)
			}
			states = append(states, s)
		}
		if !tokenchecker.MemoHas(states[1]) {
			t.Fatal("the cached answer's state is not the memo's")
		}
		return states[1]
	}
	first := cached("alice@example.org")
	// Another answer for the same token: it is fetched anew only after the purge.
	spec := aliceSpec()
	spec["username"] = "alice-renamed@example.org"
	if err := fake.AddTokens(map[string]fakeglobus.Spec{tok: spec}); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Check(ctx, tok); err != nil || s != first {
		t.Fatalf("before the purge: %+v %v", s, err)
	}
	if err := c.Purge(tok); err != nil {
		t.Fatal(err)
	}
	if second := cached("alice-renamed@example.org"); second == first || first.Username != "alice@example.org" {
		t.Fatalf("the refetched answer's state is the purged one's: %+v", second)
	}
}

// When C releases an answer the memo held (its id is in the ids C reads) but the memo has
// evicted it since, Check asks again, keeping the reference, and builds the state anew.
func TestMemoEvictedBehindC(t *testing.T) {
	c := newChecker(t)
	tok := newToken(t, nil)
	tokenchecker.WithMemo(c, 1<<20, func() {
		first, err := c.Check(ctx, tok) // network
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Check(ctx, tok); err != nil || s != first {
			t.Fatalf("%+v %v", s, err)
		}
		tokenchecker.EvictBehindC(c)
		s, info, err := c.CheckInfo(ctx, tok)
		if err != nil || info.CacheSource != "memory" || s == first || !reflect.DeepEqual(*s, *first) {
			t.Fatalf("%+v %+v %v", s, info, err)
		}
	})
}

func isCode(err error, want *tokenchecker.Error) bool {
	e, ok := err.(*tokenchecker.Error)
	return ok && e.Code == want.Code
}

// manyTokens adds n tokens of distinct users to the fake; user i's username is userName(i).
func manyTokens(t testing.TB, prefix string, n int, spec func(i int) fakeglobus.Spec) []string {
	t.Helper()
	toks := make([]string, n)
	specs := map[string]fakeglobus.Spec{}
	for i := range toks {
		toks[i] = fmt.Sprintf("go-%s-%d-%d", prefix, os.Getpid(), i)
		id := fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i)
		s := fakeglobus.Spec{"identity_set": []string{id}, "sub": id, "username": userName(i), "name": fmt.Sprint("User ", i), "exp_in": 3600}
		if spec != nil {
			for k, v := range spec(i) {
				s[k] = v
			}
		}
		specs[toks[i]] = s
		if len(specs) == 5000 || i == n-1 {
			if err := fake.AddTokens(specs); err != nil {
				t.Fatal(err)
			}
			specs = map[string]fakeglobus.Spec{}
		}
	}
	t.Cleanup(func() {
		for _, tok := range toks {
			_ = fake.RemoveToken(tok)
		}
	})
	return toks
}

func userName(i int) string { return fmt.Sprintf("user%d@example.org", i) }

// A memo of a few entries (or none) answers every token right, concurrently, within its
// bound.
func TestMemoSmallBound(t *testing.T) {
	c := newChecker(t)
	toks := manyTokens(t, "memo-bound", 200, nil)
	for _, bound := range []int{0, 1000, 8192} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			tokenchecker.WithMemo(c, bound, func() { hammer(t, c, toks) })
		})
	}
}

// hammer checks toks from 4 goroutines, twice each, checking the answers and the memo's bound.
func hammer(t *testing.T, c *tokenchecker.Checker, toks []string) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 2*len(toks); k++ {
				i := (k*7 + g*50) % len(toks)
				s, err := c.Check(ctx, toks[i])
				if err != nil {
					t.Error(err)
					return
				}
				if s.Username != userName(i) || s.Name != fmt.Sprint("User ", i) {
					t.Errorf("token %d: username %q, want %q", i, s.Username, userName(i))
					return
				}
				if _, bytes, bound := tokenchecker.CheckerMemoStats(c); bytes > bound {
					t.Errorf("the memo counts %d bytes, bound %d", bytes, bound)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TOKENCHECKER_MEMO_BYTES, read once by the process: a child process (this test binary) runs
// TestMemoSmallBoundChild with each setting.
func TestMemoEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary again")
	}
	for _, setting := range []string{"0", "4096", "not-a-number"} {
		t.Run(setting, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMemoSmallBoundChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "TOKENCHECKER_MEMO_BYTES="+setting, "TC_GO_MEMO_CHILD="+setting)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestMemoSmallBoundChild") {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestMemoSmallBoundChild(t *testing.T) {
	setting, ok := os.LookupEnv("TC_GO_MEMO_CHILD")
	if !ok {
		t.Skip("run by TestMemoEnvironment")
	}
	c := newChecker(t)
	toks := manyTokens(t, "memo-env", 100, nil)
	hammer(t, c, toks)
	entries, bytes, bound := tokenchecker.MemoStats()
	switch setting {
	case "0":
		if entries != 0 || bound != 0 {
			t.Fatalf("memo off: %d entries, bound %d", entries, bound)
		}
	case "4096": // 16 slots of 24 bytes, the rest for entries
		if bound != 4096-16*24 || entries == 0 || entries > 10 || bytes > bound {
			t.Fatalf("4096 bytes: %d entries of %d bytes, bound %d", entries, bytes, bound)
		}
	default:
		if bound != tokenchecker.MemoDefaultBytes-65536*24 || entries != len(toks) {
			t.Fatalf("default: %d entries, bound %d", entries, bound)
		}
	}
}

// The handle path's state (tc_answer_fields) equals the result document's (encoding/json) for
// strings with escapes, control characters and non-ASCII, absent and empty values, a sub that
// is not in the identity set, and audiences that repeat the client id.
func TestFieldsEqualDocument(t *testing.T) {
	c := newChecker(t)
	odd := "quote \" backslash \\ slash / tab \t newline \n nul-ish \u0001 del \u007f é 漢字 🎉 \u2028 \ufeff"
	cases := map[string]fakeglobus.Spec{
		"escapes": {"identity_set": []string{fakeglobus.AliceID, fakeglobus.AliceID2}, "sub": fakeglobus.AliceID,
			"username": odd, "name": "Zoë \"Z\" O'Brien\\", "email": "zoë@exämple.org"},
		"unicode everywhere": {"identity_set": []string{"ünïcode-id", "🎉"}, "sub": "🎉",
			"username": "名前@example.org", "name": "\U0001F600", "email": "名前@example.org",
			"client_id": fakeglobus.ClientID, "aud": []string{fakeglobus.ClientID, "ほか"},
			"scope": fakeglobus.TestScope + " ✓:scope"},
		"empty strings":   {"identity_set": []string{""}, "sub": "", "username": "", "name": "", "email": ""},
		"sub elsewhere":   {"identity_set": []string{fakeglobus.BobID}, "sub": fakeglobus.AliceID},
		"no identity set": {"omit_identity_set": true, "sub": fakeglobus.AliceID},
		"many":            {"identity_set": []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, "aud": []string{"x", fakeglobus.ClientID, "y"}},
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			tok := newToken(t, spec)
			doc, _, err := tokenchecker.CheckViaDocument(c, ctx, tok) // network, then cached
			if err != nil {
				t.Fatal(err)
			}
			doc.CacheSource, doc.CacheAge = "", 0
			s, info, err := c.CheckInfo(ctx, tok)
			if err != nil || info.CacheSource != "memory" {
				t.Fatalf("%+v %v", info, err)
			}
			if !reflect.DeepEqual(*s, *doc) {
				t.Fatalf("handle path %#v\ndocument    %#v", *s, *doc)
			}
			if u, ok := spec["username"].(string); ok && s.Username != u {
				t.Fatalf("username %q, want %q", s.Username, u)
			}
		})
	}
}

// The memo counts at least what its entries hold in the Go heap (memo.go's accounting).
func TestMemoEntrySizeCoversTheHeap(t *testing.T) {
	c := newChecker(t)
	toks := manyTokens(t, "memo-heap", 2000, func(i int) fakeglobus.Spec {
		id := fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i)
		return fakeglobus.Spec{"identity_set": []string{id, fmt.Sprintf("d0ffee00-0000-4000-8000-%012d", i)}, "email": fmt.Sprint("other", i, "@example.org")}
	})
	public, err := tokenchecker.NewPolicy([]string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer public.Close()
	for _, tok := range toks { // fetched and cached; states of the document path are garbage
		if _, _, err := c.AuthorizePolicy(ctx, tok, public); err != nil {
			t.Fatal(err)
		}
	}
	tokenchecker.WithMemo(c, 64<<20, func() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, tok := range toks { // a state for each, and an authorization's
			if _, err := c.Check(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.AuthorizePolicy(ctx, tok, public); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		entries, bytes, _ := tokenchecker.CheckerMemoStats(c)
		heap := int(after.HeapAlloc) - int(before.HeapAlloc)
		t.Logf("%d entries: %d bytes counted (%d each), %d bytes of heap (%d each)", entries, bytes,
			bytes/max(entries, 1), heap, heap/max(entries, 1))
		if entries != len(toks) || heap > bytes {
			t.Fatalf("%d entries count %d bytes but hold %d bytes of heap", entries, bytes, heap)
		}
	})
	runtime.KeepAlive(toks)
}

// A result bigger than the one-allocation sizes (many groups) is read whole; eager checkers
// give each call its own state.
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
			first = *s
		} else if !reflect.DeepEqual(*s, first) {
			t.Fatalf("call %d differs from the first", i)
		}
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
