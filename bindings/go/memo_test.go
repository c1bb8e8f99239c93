package tokenchecker

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The result memo (memo.go) must give exactly what decoding gives, for every document.

// withAge is doc with the value of its last "age_ms" replaced by age.
func withAge(t testing.TB, doc, age string) string {
	t.Helper()
	prefix, suffix, _, ok := splitAge([]byte(doc))
	if !ok {
		t.Fatalf("no age in %s", doc)
	}
	return string(prefix) + age + string(suffix)
}

// sameAsDecoding checks that the memo's answer for doc is the decoder's.
func sameAsDecoding(t testing.TB, m *stateMemo, doc string) *AuthState {
	t.Helper()
	want, wantErr := stateResult(StatusOK, []byte(doc))
	got, err := m.state([]byte(doc))
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%s: memo error %v, decoding error %v", doc, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\nmemo     %+v\ndecoding %+v", doc, got, want)
	}
	return got
}

func TestMemoKeysWithoutTheAge(t *testing.T) {
	m := newStateMemo(memoCapacity)
	doc := decodeSeeds[0]
	for i, age := range []string{"12", "13", "0", "123456789", "12", "-0", "-7", "9223372036854775807"} {
		s := sameAsDecoding(t, m, withAge(t, doc, age))
		if n := m.len(); n != 1 {
			t.Fatalf("age %s: %d entries, want 1 (the age is not part of the key)", age, n)
		}
		if i == 1 && s.CacheAge != 13*time.Millisecond {
			t.Fatalf("CacheAge %v", s.CacheAge)
		}
	}
	// Not integers the decoder accepts, or no integer at all: decoded (and refused) as usual,
	// never answered from the entry.
	for _, age := range []string{"01", "1.5", "1e3", "-", "", "9223372036854775808", "null", `"5"`, "1 "} {
		sameAsDecoding(t, m, withAge(t, doc, age))
	}
}

func TestMemoDifferentDocumentsDifferentStates(t *testing.T) {
	m := newStateMemo(memoCapacity)
	alice := decodeSeeds[0]
	bob := strings.ReplaceAll(alice, "alice", "bob")
	authorized := strings.TrimSuffix(alice, "}") + `,"authorization":{"authorized":true,"matched":"public"}}`
	other := strings.TrimSuffix(alice, "}") + `,"authorization":{"authorized":true,"matched":"all_authenticated_users"}}`
	for round := 0; round < 2; round++ {
		a := sameAsDecoding(t, m, alice)
		b := sameAsDecoding(t, m, bob)
		if a.Username != "alice@example.org" || b.Username != "bob@example.org" {
			t.Fatalf("%q %q", a.Username, b.Username)
		}
		if p := sameAsDecoding(t, m, authorized); p.Matched != "public" {
			t.Fatalf("matched %q", p.Matched)
		}
		if p := sameAsDecoding(t, m, other); p.Matched != "all_authenticated_users" {
			t.Fatalf("matched %q", p.Matched)
		}
	}
	if n := m.len(); n != 4 {
		t.Fatalf("%d entries, want 4", n)
	}
}

// Documents whose age is not where the lookup expects it are decoded every time (and never
// confused with one another).
func TestMemoUnusualShapes(t *testing.T) {
	m := newStateMemo(memoCapacity)
	docs := append([]string{
		// another "age_ms" after the cache's: the lookup would take the wrong one
		`{"sub":"a","cache":{"source":"memory","age_ms":5},"future":{"age_ms":7}}`,
		`{"sub":"a","cache":{"source":"memory","age_ms":5},"future":{"age_ms":8}}`,
		// an "age_ms" that is not the cache's
		`{"sub":"a","future":{"age_ms":7}}`,
		// a later null does not set it
		`{"sub":"a","cache":{"source":"memory","age_ms":5,"age_ms":null}}`,
		// a string value that looks like a key
		`{"sub":"a","cache":{"source":"memory","age_ms":5},"name":"\"age_ms\":6"}`,
		`{"sub":"a","cache":{"source":"memory","age_ms":5},"name":"\"age_ms\":7"}`,
		`{"sub":"a","cache":{"source":"memory","age_ms": 5}}`,
		`{"sub":"a","cache":{"source":"memory","age_ms":5}}`,
		`{"sub":"a","cache":{"source":"memory","age_ms":5}} `,
		`{"sub":"a","cache":{"source":"memory","AGE_MS":5}}`,
	}, decodeSeeds...)
	for round := 0; round < 2; round++ {
		for _, doc := range docs {
			sameAsDecoding(t, m, doc)
		}
	}
}

// A caller that modifies its result, its slices included, affects no other result.
func TestMemoResultsAreCopies(t *testing.T) {
	m := newStateMemo(memoCapacity)
	doc := strings.Replace(decodeSeeds[0], `"groups":null`, `"groups":["g1","g2"]`, 1)
	want, err := stateResult(StatusOK, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s, err := m.state([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s, want) {
			t.Fatalf("call %d: %+v\nwant %+v", i, s, want)
		}
		for _, l := range [][]string{s.Identities, s.Scopes, s.Audience, s.Groups, s.Principals} {
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

func TestMemoBound(t *testing.T) {
	t.Run("entries", func(t *testing.T) { memoBound(t, newStateMemo(40)) }) // 2 per shard
	t.Run("bytes", func(t *testing.T) {
		m := newStateMemo(memoCapacity)
		m.perShardBytes = 3 * len(decodeSeeds[0]) // 1 or 2 entries per shard
		memoBound(t, m)
	})
}

func memoBound(t *testing.T, m *stateMemo) {
	if m.capacity() != 32 && m.capacity() != memoCapacity {
		t.Fatalf("capacity %d", m.capacity())
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				sub := fmt.Sprintf("user-%d-%d", g, i%150)
				doc := strings.ReplaceAll(decodeSeeds[0], "a11ce000-0000-4000-8000-000000000001", sub)
				doc = strings.Replace(doc, `"age_ms":12`, fmt.Sprintf(`"age_ms":%d`, i), 1)
				s, err := m.state([]byte(doc))
				if err != nil || s.Sub != sub || s.CacheAge != time.Duration(i)*time.Millisecond {
					t.Errorf("%s: %+v %v", sub, s, err)
					return
				}
				if n, size := m.len(), m.size(); n > m.capacity() || size > memoShards*m.perShardBytes {
					t.Errorf("%d entries of %d bytes; bounds %d, %d", n, size, m.capacity(), memoShards*m.perShardBytes)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := m.len(); n == 0 || n > m.capacity() {
		t.Fatalf("%d entries", n)
	}
	if n := frontOnlyHoldsEntries(t, m); n == 0 {
		t.Fatal("nothing in the front table")
	}
	m.reset()
	if n, size := m.len(), m.size(); n != 0 || size != 0 {
		t.Fatalf("%d entries, %d bytes after reset", n, size)
	}
	if n := frontOnlyHoldsEntries(t, m); n != 0 {
		t.Fatalf("%d front slots set after reset", n)
	}
	sameAsDecoding(t, m, decodeSeeds[0])
}

// FuzzMemoState checks that the memo agrees with decoding, for a document and for the same
// document with another age, after the memo has seen the first.
func FuzzMemoState(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s), "7")
	}
	f.Add([]byte(`{"cache":{"age_ms":5},"x":{"age_ms":6}}`), "8")
	f.Add([]byte(`{"cache":{"age_ms":5}}`), "05")
	f.Add([]byte(`{"cache":{"age_ms":5}}`), "5.0")
	f.Fuzz(func(t *testing.T, doc []byte, age string) {
		m := newStateMemo(memoCapacity)
		sameAsDecoding(t, m, string(doc))
		sameAsDecoding(t, m, string(doc))
		if prefix, suffix, _, ok := splitAge(doc); ok {
			sameAsDecoding(t, m, string(prefix)+age+string(suffix))
		}
	})
}

// The hand-written request encoder gives encoding/json's bytes.
func TestAuthorizeRequestEncoding(t *testing.T) {
	principals := []string{"", "public", "urn:globus:auth:identity:a11ce000", `q"b\s`, "<&>",
		"\x00\x01\b\f\n\r\t\x1f\x7f", "é€😀", "bad\xff\xfe", "\u2028\u2029", "\xed\xa0\x80"}
	for _, list := range [][]string{nil, {}, {"a"}, principals} {
		for _, opts := range []AuthorizeOptions{{}, {AllowPublic: true}, {AllowAllAuthenticatedUsers: true}, {true, true}} {
			checkRequestEncoding(t, list, opts)
		}
	}
}

func checkRequestEncoding(t *testing.T, list []string, opts AuthorizeOptions) {
	t.Helper()
	l := list
	if l == nil {
		l = []string{}
	}
	want, err := json.Marshal(struct {
		AllowedPrincipals          []string `json:"allowed_principals"`
		AllowPublic                bool     `json:"allow_public"`
		AllowAllAuthenticatedUsers bool     `json:"allow_all_authenticated_users"`
	}{l, opts.AllowPublic, opts.AllowAllAuthenticatedUsers})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendAuthorizeRequest(nil, list, opts); string(got) != string(want) {
		t.Fatalf("%q:\ngot  %s\nwant %s", list, got, want)
	}
}

func FuzzAuthorizeRequestEncoding(f *testing.F) {
	f.Add("public", "\x00<é\xff", false, true)
	f.Fuzz(func(t *testing.T, a, b string, public, all bool) {
		checkRequestEncoding(t, []string{a, b}, AuthorizeOptions{public, all})
	})
}

// BenchmarkMemoHit is the Go side of a cached Check: find the entry, copy the state.
func BenchmarkMemoHit(b *testing.B) {
	m := newStateMemo(memoCapacity)
	doc := []byte(decodeSeeds[0])
	if _, err := m.state(doc); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.state(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// frontOnlyHoldsEntries checks that the front table refers only to entries of the shards (so
// that it keeps nothing alive beyond the memo's bounds), and counts the slots in use.
func frontOnlyHoldsEntries(t *testing.T, m *stateMemo) int {
	t.Helper()
	in := map[*memoEntry]bool{}
	for i := range m.shards {
		for _, e := range m.shards[i].m {
			in[e] = true
		}
	}
	n := 0
	for i := range m.front {
		if e := m.front[i].Load(); e != nil {
			n++
			if !in[e] {
				t.Fatalf("front slot %d holds an entry that is not in the memo", i)
			}
		}
	}
	return n
}
