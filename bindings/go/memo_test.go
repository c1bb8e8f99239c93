package tokenchecker

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"
)

// The answer memo's table (memo.go): keyed by the answer's id, two ways per set, bounded by
// bytes. Entries here are made up (building them from an answer's fields takes the library:
// memo_checker_test.go does that through the public API).

func entry(id uint64, size int) *memoEntry {
	e := &memoEntry{id: id, size: size}
	e.state.Sub = fmt.Sprint("user-", id)
	return e
}

func TestMemoBytesSetting(t *testing.T) {
	for v, want := range map[string]int{
		"":          memoDefaultBytes,
		"junk":      memoDefaultBytes,
		"-1":        memoDefaultBytes,
		"1.5":       memoDefaultBytes,
		"0":         0,
		"4096":      4096,
		" 65536 \n": 65536,
	} {
		if got := memoBytes(v); got != want {
			t.Errorf("TOKENCHECKER_MEMO_BYTES=%q: %d, want %d", v, got, want)
		}
	}
	// The table is one slot per 256 bytes of the bound (a power of two), 24 bytes each, and
	// counted in it.
	for _, tc := range []struct{ bound, slots int }{{1, 2}, {1000, 4}, {4096, 16}, {memoDefaultBytes, 65536}} {
		m := newAnswerMemo(tc.bound)
		if len(m.slots) != tc.slots || len(m.table) != 2*tc.slots || m.setMask != uint64(tc.slots/2-1) ||
			m.maxBytes != max(tc.bound-tc.slots*memoSlotBytes, 0) {
			t.Errorf("bound %d: %d slots, mask %d, %d bytes for entries", tc.bound, len(m.slots), m.setMask, m.maxBytes)
		}
	}
}

// One entry per id: a second entry for a known id is not kept (the first is returned).
func TestMemoKeyedByID(t *testing.T) {
	m := newAnswerMemo(1 << 20)
	a := m.put(entry(1, 500))
	if b := m.put(entry(1, 500)); b != a || m.lookup(1) != a || m.lookup(2) != nil {
		t.Fatal("a second entry for id 1")
	}
	c := m.put(entry(2, 500))
	if m.lookup(2) != c || m.bytes != 1000 || len(m.entries()) != 2 {
		t.Fatalf("%d bytes, %d entries", m.bytes, len(m.entries()))
	}
	m.reset()
	if m.lookup(1) != nil || m.bytes != 0 || len(m.entries()) != 0 {
		t.Fatal("reset")
	}
	var off *answerMemo // TOKENCHECKER_MEMO_BYTES=0
	off.reset()
	if ids, mask := off.known(); ids != nil || mask != 0 {
		t.Fatal("an off memo hands C a table")
	}
}

// Two ways per set: a third id of a set evicts the older answer.
func TestMemoWays(t *testing.T) {
	m := newAnswerMemo(1 << 20)
	sets := m.setMask + 1
	for _, id := range []uint64{5, 5 + sets, 5 + 2*sets} {
		m.put(entry(id, 500))
	}
	if m.lookup(5) != nil || m.lookup(5+sets) == nil || m.lookup(5+2*sets) == nil || len(m.entries()) != 2 {
		t.Fatalf("%d entries", len(m.entries()))
	}
	if m.put(entry(6, 500)); len(m.entries()) != 3 || m.bytes != 1500 {
		t.Fatal("another set")
	}
}

// The bytes never pass the bound: entries are evicted for a new one; an entry bigger than the
// whole bound is handed back without being kept.
func TestMemoByteBound(t *testing.T) {
	m := newAnswerMemo(8192) // 32 slots: 7680 bytes for entries
	for id := uint64(1); id <= 100; id++ {
		e := m.put(entry(id, 1000))
		if e.id != id || m.lookup(id) != e {
			t.Fatalf("entry %d not kept", id)
		}
		if m.bytes > m.maxBytes || m.bytes != 1000*len(m.entries()) {
			t.Fatalf("after %d: %d bytes in %d entries, bound %d", id, m.bytes, len(m.entries()), m.maxBytes)
		}
	}
	if n := len(m.entries()); n != 7 {
		t.Fatalf("%d entries of 1000 bytes in a bound of %d", n, m.maxBytes)
	}
	big := entry(1000, m.maxBytes+1)
	if got := m.put(big); got != big || m.lookup(1000) != nil || len(m.entries()) != 7 {
		t.Fatal("an entry bigger than the bound was kept, or evicted others")
	}
}

// Entries hit since the hand's last turn stay; the others go first (CLOCK).
func TestMemoKeepsWhatIsHit(t *testing.T) {
	m := newAnswerMemo(8192) // 7424 bytes for entries: 7 of 1000
	for id := uint64(1); id <= 7; id++ {
		m.put(entry(id, 1000))
	}
	for round := 0; round < 5; round++ {
		for id := uint64(1); id <= 3; id++ { // hit
			if m.lookup(id) == nil {
				t.Fatalf("round %d: entry %d, hit every round, was evicted", round, id)
			}
		}
		m.put(entry(uint64(100+round), 1000)) // one of the others goes
		if len(m.entries()) != 7 {
			t.Fatalf("%d entries", len(m.entries()))
		}
	}
}

// An entry keeps an authorization's state per principal (up to memoMaxAuthorized), counted in
// the bound; one evicted meanwhile keeps none.
func TestMemoAuthorizedStates(t *testing.T) {
	m := newAnswerMemo(1 << 20)
	e := m.put(entry(1, 500))
	a := m.authorized(e, "p1")
	if a.Matched != "p1" || a.Sub != e.state.Sub || e.state.Matched != "" || m.authorized(e, "p1") != a {
		t.Fatalf("%+v", a)
	}
	if b := m.authorized(e, "p2"); b == a || b.Matched != "p2" || m.authorized(e, "p1") != a {
		t.Fatal("a second principal")
	}
	if m.bytes != 500+2*memoStateBytes || e.size != m.bytes || m.size(2).Load()&^memoReferenced != uint64(e.size) {
		t.Fatalf("%d bytes counted, entry %d", m.bytes, e.size)
	}
	for i := 0; i < 2*memoMaxAuthorized; i++ {
		if s := m.authorized(e, fmt.Sprint("q", i)); s.Matched != fmt.Sprint("q", i) {
			t.Fatalf("%q", s.Matched)
		}
	}
	if a := e.authorized[memoMaxAuthorized-1].Load(); a == nil || a.matched != "q0" ||
		m.bytes != 500+memoMaxAuthorized*memoStateBytes || m.authorized(e, "p1") != &e.authorized[0].Load().state {
		t.Fatalf("%d bytes", m.bytes)
	}
	if unsafe.Sizeof(memoEntry{}) > 416 || unsafe.Sizeof(authorizedState{}) > 416 {
		t.Fatalf("an entry is %d bytes, an authorization's state %d: see memoEntryOverhead",
			unsafe.Sizeof(memoEntry{}), unsafe.Sizeof(authorizedState{}))
	}
	m.reset()
	if s := m.authorized(e, "p3"); s.Matched != "p3" || m.bytes != 0 {
		t.Fatalf("an evicted entry: %+v, %d bytes", s, m.bytes)
	}
	var off *answerMemo
	if s := off.authorized(entry(2, 1), "p"); s.Matched != "p" {
		t.Fatal("no memo")
	}
	// The states count against the bound: adding them evicts others.
	small := newAnswerMemo(8192) // 7424 bytes for entries
	first := small.put(entry(1, 3000))
	small.put(entry(2, 3000))
	for i := 0; i < 4; i++ {
		small.authorized(first, fmt.Sprint("p", i))
		if small.bytes > small.maxBytes {
			t.Fatalf("%d bytes, bound %d", small.bytes, small.maxBytes)
		}
	}
}

// Goroutines that add, look up and reset together (run with -race) keep the bound, and the
// table C reads matches the entries.
func TestMemoConcurrent(t *testing.T) {
	m := newAnswerMemo(16384)
	var wg sync.WaitGroup
	var next sync.Mutex
	id := uint64(0)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				next.Lock()
				id++
				my := id
				next.Unlock()
				e := m.put(entry(my, 300+int(my%7)*100))
				if e.id != my || e.state.Sub != fmt.Sprint("user-", my) {
					t.Errorf("%d: %+v", my, e)
					return
				}
				if old := m.lookup(my / 2); old != nil && old.id != my/2 {
					t.Errorf("lookup %d found %d", my/2, old.id)
					return
				} else if old != nil && m.authorized(old, "p").Sub != old.state.Sub {
					t.Errorf("the authorized state of %d", my/2)
					return
				}
				if g == 0 && i == 1000 {
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
		id, n := m.id(uint64(i)).Load(), m.size(uint64(i)).Load()&^memoReferenced // sizes change under mu
		if e == nil && id != 0 || e != nil && (id != e.id || n != uint64(e.size)) {
			t.Fatalf("slot %d: the table says %d (%d bytes)", i, id, n)
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

// The policy cache's keys are unambiguous: no two requests share one.
func TestPolicyKey(t *testing.T) {
	seen := map[string]string{}
	for _, r := range []struct {
		p    []string
		opts AuthorizeOptions
	}{
		{nil, AuthorizeOptions{}},
		{[]string{}, AuthorizeOptions{AllowPublic: true}},
		{[]string{""}, AuthorizeOptions{}},
		{[]string{"", ""}, AuthorizeOptions{}},
		{[]string{"a\x00b"}, AuthorizeOptions{}},
		{[]string{"a", "b"}, AuthorizeOptions{}},
		{[]string{"ab"}, AuthorizeOptions{}},
		{[]string{"ab"}, AuthorizeOptions{AllowAllAuthenticatedUsers: true}},
		{[]string{"\x01a"}, AuthorizeOptions{}},
	} {
		k, name := string(policyKey(nil, r.p, r.opts)), fmt.Sprintf("%q %+v", r.p, r.opts)
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share a key", name, other)
		}
		seen[k] = name
	}
}

// BenchmarkMemoHit is the Go side of a cached Check's memo lookup.
func BenchmarkMemoHit(b *testing.B) {
	m := newAnswerMemo(memoDefaultBytes)
	m.put(entry(1, 500))
	b.ReportAllocs()
	for b.Loop() {
		if m.lookup(1) == nil {
			b.Fatal("no entry")
		}
	}
}
