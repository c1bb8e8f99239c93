package tokenchecker

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The answer memo (authstate.go): keyed by the answer's id, bounded, decoded once per entry, and
// giving every caller its own result.

// answerText is a text as tc_answer_text renders it.
func answerText(sub string, identities ...string) []byte {
	return []byte(`{"active":true,"sub":"` + sub + `","identities":["` + strings.Join(identities, `","`) +
		`"],"username":"` + sub + `@example.org","name":"Alice","email":null,"client_id":"test-client",` +
		`"scopes":["urn:globus:auth:scope:test:all","openid"],"aud":["test-client"],` +
		`"exp":1767225600,"nbf":1767222000,"iat":1767222000}`)
}

// The derived members are the library's result document's: a decoding of that document
// gives the same state.
func TestMemoDerivesTheResultDocument(t *testing.T) {
	m := newAnswerMemo(memoCapacity)
	e, err := m.add(7, answerText("a11ce", "a11ce", "a11ce2"))
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"active":true,"sub":"a11ce","effective_identity":"urn:globus:auth:identity:a11ce",` +
		`"identities":["a11ce","a11ce2"],"username":"a11ce@example.org","name":"Alice","email":null,` +
		`"client_id":"test-client","scopes":["urn:globus:auth:scope:test:all","openid"],` +
		`"aud":["test-client"],"exp":1767225600,"nbf":1767222000,"iat":1767222000,` +
		`"principals":["urn:globus:auth:identity:a11ce","urn:globus:auth:identity:a11ce2"],` +
		`"groups":null,"groups_status":"not_fetched","cache":{"source":"memory","age_ms":12}}`
	want, err := stateResult(StatusOK, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.result("memory", 12); !reflect.DeepEqual(got, want) {
		t.Fatalf("\nmemo     %+v\ndocument %+v", got, want)
	}
	// A null subject has no effective identity; no identities, no principals (not nil).
	e, err = m.add(8, []byte(`{"active":true,"sub":null,"identities":[],"scopes":[],"aud":[],"exp":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.result("near", 0); s.EffectiveIdentity != "" || s.Principals == nil || len(s.Principals) != 0 ||
		!s.Expiry.IsZero() || s.CacheSource != "near" {
		t.Fatalf("%+v", s)
	}
	if _, err := m.add(9, []byte(`not json`)); err == nil || err.(*Error).Code != StatusPanic || m.lookup(9) != nil {
		t.Fatalf("a text that does not decode: %v", err)
	}
}

// One entry per id, decoded once: a second text for a known id is not decoded; another id is
// another entry, even with the same text (a refetch of the same token).
func TestMemoKeyedByID(t *testing.T) {
	m := newAnswerMemo(memoCapacity)
	a, _ := m.add(1, answerText("alice", "alice"))
	b, _ := m.add(1, answerText("bob", "bob"))
	c, _ := m.add(2, answerText("alice", "alice"))
	if a != b || b.state.Sub != "alice" || c == a || c.state.Sub != "alice" {
		t.Fatalf("%p %p %p %q", a, b, c, b.state.Sub)
	}
	if m.lookup(1) != a || m.lookup(2) != c || m.lookup(3) != nil {
		t.Fatal("lookup")
	}
	if e, err := m.get(1, nil, nil); e != a || err != nil {
		t.Fatalf("get without a reference: %p %v", e, err)
	}
	m.reset()
	if e, err := m.get(1, nil, nil); e != nil || err != nil {
		t.Fatalf("get of an evicted id without a reference: %p %v", e, err)
	}
}

// A caller that modifies its result, its slices included, affects no other result.
func TestMemoResultsAreCopies(t *testing.T) {
	for _, n := range []int{1, 3, 7, 20} { // the one-allocation sizes and beyond
		m := newAnswerMemo(memoCapacity)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("id%d", i)
		}
		e, err := m.add(1, answerText("id0", ids...))
		if err != nil {
			t.Fatal(err)
		}
		want := e.result("memory", 5)
		for i := 0; i < 3; i++ {
			s := e.result("memory", 5)
			if !reflect.DeepEqual(s, want) {
				t.Fatalf("call %d: %+v\nwant %+v", i, s, want)
			}
			for _, l := range [][]string{s.Identities, s.Scopes, s.Audience, s.Principals} {
				for j := range l {
					l[j] = "changed"
				}
			}
			s.Identities = append(s.Identities, "appended") // must not write into Scopes
			s.Scopes = append(s.Scopes, "appended")
			if s.Scopes[0] != "changed" || s.Audience[0] != "changed" {
				t.Fatalf("an append wrote over the next slice: %+v", s)
			}
			s.Sub, s.Username, s.CacheAge, s.Expiry = "changed", "changed", time.Hour, time.Time{}
		}
	}
}

// Two ways per set: a third id of a set evicts the older answer.
func TestMemoWays(t *testing.T) {
	m := newAnswerMemo(8) // 2 sets
	sets := m.setMask + 1
	for _, id := range []uint64{5, 5 + sets, 5 + 2*sets} {
		if _, err := m.add(id, answerText("u", "u")); err != nil {
			t.Fatal(err)
		}
	}
	if m.lookup(5) != nil || m.lookup(5+sets) == nil || m.lookup(5+2*sets) == nil || len(m.entries()) != 2 {
		t.Fatalf("%d entries", len(m.entries()))
	}
	if _, err := m.add(6, answerText("v", "v")); err != nil || len(m.entries()) != 3 {
		t.Fatal("another set")
	}
}

func TestMemoBound(t *testing.T) {
	t.Run("entries", func(t *testing.T) { memoBound(t, newAnswerMemo(40)) })
	t.Run("bytes", func(t *testing.T) {
		m := newAnswerMemo(memoCapacity)
		m.maxBytes = 5 * (2*len(answerText("user-1-100", "user-1-100")) + 16*7 + 512) // ~5 entries
		memoBound(t, m)
	})
}

// memoBound runs goroutines that add, look up and read entries, and reset the memo, together
// (run with -race), checking the bounds as they go and the table C reads afterwards.
func memoBound(t *testing.T, m *answerMemo) {
	var wg sync.WaitGroup
	var next sync.Mutex
	id := uint64(0)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				next.Lock()
				id++
				my := id
				next.Unlock()
				sub := fmt.Sprintf("user-%d-%d", g, i)
				e, err := m.add(my, answerText(sub, sub))
				if err != nil || e.id != my || e.result("memory", 1).Sub != sub {
					t.Errorf("%d: %+v %v", my, e, err)
					return
				}
				if old := m.lookup(my / 2); old != nil && old.state.Sub == "" {
					t.Errorf("a decoded entry without its state")
					return
				}
				if n := len(m.entries()); n > len(m.slots) {
					t.Errorf("%d entries, bound %d", n, len(m.slots))
					return
				}
				if g == 0 && i == 250 {
					m.reset()
				}
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	size := 0
	for i := range m.slots {
		e := m.slots[i].Load()
		if e == nil && m.ids[i].Load() != 0 || e != nil && m.ids[i].Load() != e.id {
			t.Fatalf("slot %d: ids says %d", i, m.ids[i].Load())
		}
		if e != nil {
			size += e.size
		}
	}
	if n := len(m.entries()); n == 0 || size != m.bytes || m.bytes > m.maxBytes {
		t.Fatalf("%d entries of %d bytes (counted %d, bound %d)", n, size, m.bytes, m.maxBytes)
	}
	if m.lookup(id) == nil {
		t.Fatal("the newest answer is not kept")
	}
}

func TestErrorFromDoc(t *testing.T) {
	for doc, want := range map[string]string{
		`{"error":{"code":"TC_INACTIVE_TOKEN","message":"the token is not active"}}`: "the token is not active",
		`{"error":{"message":"say \"hi\"","code":"X"}}`:                              `say "hi"`,
		`{"error":{"code":"X","message":"m","extra":1}}`:                             "m",
		`{"error":{"MESSAGE":"upper"}}`:                                              "upper",
		`not json`:                                                                   "the library reported TC_INACTIVE_TOKEN without a message",
		``:                                                                           "the library reported TC_INACTIVE_TOKEN without a message",
	} {
		if got := errorFromDoc(StatusInactiveToken, []byte(doc)).Message; got != want {
			t.Errorf("%s: %q, want %q", doc, got, want)
		}
	}
}

// BenchmarkMemoHit is the Go side of a cached Check: the lookup and the caller's copy.
func BenchmarkMemoHit(b *testing.B) {
	m := newAnswerMemo(memoCapacity)
	if _, err := m.add(1, answerText("a11ce", "a11ce", "a11ce2")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if e, _ := m.get(1, nil, nil); e.result("memory", 1) == nil {
			b.Fatal("no result")
		}
	}
}
