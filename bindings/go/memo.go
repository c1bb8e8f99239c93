package tokenchecker

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The result memo: decoded result documents, so that a cached Check (or Authorize) costs the
// C call, a lookup (a comparison of the document with the entry's) and a copy instead of a
// decoding.
//
// The library renders the same bytes for the same cached answer, except for cache.age_ms,
// which grows every millisecond. So an entry is keyed by the document without the digits of
// that value (the prefix before them and the suffix after them, which must both be equal),
// and the age is read from each document. An entry is made only when the decoder itself found
// the cache.age_ms value at exactly the place the lookup looks for it (the last `"age_ms":` of
// the document): then any document that differs from the entry's only there, by another
// integer that the decoder accepts, decodes to the entry's state with that age. Documents
// that don't fit (an unusual shape, one the fast decoder gives up on, one bigger than
// memoMaxDoc) are simply decoded every time.
//
// The memo holds what the documents hold (identities, names, scopes, groups…: never a token,
// which the documents don't contain, and it is neither keyed by nor given a token). It is
// bounded (memoCapacity entries and about memoBytes bytes per checker: random entries of a
// full shard are evicted), sharded (parallel checks of different tokens rarely share a lock;
// lookups take a read lock, or none when the front table has the document), emptied by
// Purge, PurgeIdentity and Close, and it never decides anything: it is consulted only with a
// document the library has just returned.
//
// Every call gets its own AuthState and its own slices (one allocation for all of them), so
// a caller that modifies its result cannot affect another's; the strings are shared (Go
// strings are immutable).

const (
	memoShards   = 16
	memoCapacity = 4096     // entries per checker (≈1–2 KiB each for a typical document)
	memoBytes    = 16 << 20 // per checker, counting documents, slices and states
	memoMaxDoc   = 1 << 16  // bigger documents are not kept
	memoFront    = 256      // slots of the front table
)

const ageKey = `"age_ms":`

type stateMemo struct {
	seed          maphash.Seed
	perShard      int         // entries
	perShardBytes int         // memoEntry.size
	closed        atomic.Bool // no more entries (the checker is closed)
	shards        [memoShards]memoShard

	// front holds recently used entries, indexed by a cheap function of the document (its
	// length and its last bytes before the age), so that a hot document is found without
	// hashing all of it or taking a lock; a slot that holds another document just sends the
	// lookup on to the shards. A slot is set only under its entry's shard lock, while the
	// entry is in the shard, and eviction clears it, so the front never keeps an entry alive.
	front [memoFront]atomic.Pointer[memoEntry]
}

type memoShard struct {
	mu    sync.RWMutex
	m     map[uint64]*memoEntry
	bytes int           // sum of the entries' size
	_     [64 - 40]byte // one cache line each (RWMutex 24 + map 8 + bytes 8)
}

// memoEntry is immutable once in the memo.
type memoEntry struct {
	prefix, suffix string    // the document around the digits of cache.age_ms
	state          AuthState // CacheAge unset
	strings        int       // len of all of state's slices together
	size           int       // about the memory it holds
	front          int       // its slot in the front table
}

func newStateMemo(capacity int) *stateMemo {
	per := capacity / memoShards
	if per < 1 {
		per = 1
	}
	return &stateMemo{seed: maphash.MakeSeed(), perShard: per, perShardBytes: memoBytes / memoShards}
}

// splitAge finds the value of the last "age_ms" member of doc: an integer as the fast
// decoder accepts it (no fraction, exponent or leading zero; within int64). false when there
// is none.
func splitAge(doc []byte) (prefix, suffix []byte, age int64, ok bool) {
	// The value is near the end (only the authorization member may follow it): a check's
	// document ends with `"age_ms":<digits>}}`; otherwise look for `"age_ms":` backwards, one
	// ':' at a time, rather than with a search from the start.
	i := len(doc) - 2
	for i > 0 && '0' <= doc[i-1] && doc[i-1] <= '9' {
		i--
	}
	if i > 0 && doc[i-1] == '-' {
		i--
	}
	if !(i >= len(ageKey) && string(doc[i-len(ageKey):i]) == ageKey && string(doc[len(doc)-2:]) == "}}") {
		i = len(doc)
		for {
			i = bytes.LastIndexByte(doc[:i], ':')
			if i < 0 {
				return nil, nil, 0, false
			}
			if i+1 >= len(ageKey) && string(doc[i+1-len(ageKey):i+1]) == ageKey {
				break
			}
		}
		i++
	}
	start := i
	j := start
	neg := j < len(doc) && doc[j] == '-'
	if neg {
		j++
	}
	digits := j
	var n uint64
	for ; j < len(doc) && '0' <= doc[j] && doc[j] <= '9'; j++ {
		if n > (1<<63-1)/10 {
			return nil, nil, 0, false
		}
		n = n*10 + uint64(doc[j]-'0')
	}
	if j == digits || (j-digits > 1 && doc[digits] == '0') || n > 1<<63-1 {
		return nil, nil, 0, false
	}
	if neg {
		age = -int64(n)
	} else {
		age = int64(n)
	}
	return doc[:start], doc[j:], age, true
}

func (m *stateMemo) hash(prefix, suffix []byte) uint64 {
	return maphash.Bytes(m.seed, prefix) ^ maphash.Bytes(m.seed, suffix)*0x9e3779b97f4a7c15
}

func (m *stateMemo) shard(h uint64) *memoShard {
	return &m.shards[h>>60] // memoShards == 16
}

// frontSlot mixes the lengths of the document's parts with 8 bytes a little before the age
// (in the library's documents, the end of the last principal: an identity or group id).
func frontSlot(prefix, suffix []byte) int {
	x := uint64(len(prefix))<<32 | uint64(len(suffix))
	if n := len(prefix) - len(ageKey) - len(`"],"cache":{"source":"memory",`); n >= 8 {
		x ^= binary.LittleEndian.Uint64(prefix[n-8:])
	}
	return int((x * 0x9e3779b97f4a7c15) >> (64 - 8)) // memoFront == 256
}

// unfront clears e's front slot if it holds e. Under e's shard lock.
func (m *stateMemo) unfront(e *memoEntry) {
	m.front[e.front].CompareAndSwap(e, nil)
}

// state decodes a successful result document (doc may be the library's memory or a reused
// buffer: nothing returned refers to it). A nil memo only decodes.
func (m *stateMemo) state(doc []byte) (*AuthState, error) {
	if m == nil || len(doc) > memoMaxDoc {
		return stateResult(StatusOK, doc)
	}
	prefix, suffix, age, ok := splitAge(doc)
	if !ok {
		return stateResult(StatusOK, doc)
	}
	slot := frontSlot(prefix, suffix)
	if e := m.front[slot].Load(); e != nil && e.prefix == string(prefix) && e.suffix == string(suffix) {
		return e.result(age), nil
	}
	h := m.hash(prefix, suffix)
	sh := m.shard(h)
	sh.mu.RLock()
	e := sh.m[h]
	hit := e != nil && e.prefix == string(prefix) && e.suffix == string(suffix)
	if hit {
		m.front[slot].Store(e)
	}
	sh.mu.RUnlock()
	if hit {
		return e.result(age), nil
	}

	// A miss: decode a copy of the document (the state's strings are substrings of it).
	text := string(doc)
	var w wireState
	start, end, fast := fastDecodeStateAge(text, &w)
	if !fast {
		return stateResult(StatusOK, doc) // encoding/json decides
	}
	if start != len(prefix) || end != len(doc)-len(suffix) {
		s := newState(&w) // not the shape the lookup expects: not kept
		return &s, nil
	}
	e = &memoEntry{prefix: text[:start], suffix: text[end:], state: newState(&w), front: slot}
	e.state.CacheAge = 0
	st := &e.state
	e.strings = len(st.Identities) + len(st.Scopes) + len(st.Audience) + len(st.Groups) + len(st.Principals)
	e.size = len(text) + 16*e.strings + 5*24 + 3*8 + int(unsafe.Sizeof(*e)) + 64
	sh.mu.Lock()
	if !m.closed.Load() { // checked under the lock: close's reset comes after, or sees it
		if sh.m == nil {
			sh.m = make(map[uint64]*memoEntry)
		}
		if old, found := sh.m[h]; found {
			delete(sh.m, h)
			sh.bytes -= old.size
			m.unfront(old)
		}
		for len(sh.m) > 0 && (len(sh.m) >= m.perShard || sh.bytes+e.size > m.perShardBytes) {
			for k, old := range sh.m { // map iteration starts at a random entry
				delete(sh.m, k)
				sh.bytes -= old.size
				m.unfront(old)
				break
			}
		}
		sh.m[h] = e
		sh.bytes += e.size
		m.front[slot].Store(e)
	}
	sh.mu.Unlock()
	return e.result(w.Cache.AgeMS), nil
}

// result is a copy of the entry's state for one caller.
func (e *memoEntry) result(ageMS int64) *AuthState {
	// One allocation for the state and its slices when they are not too long.
	var s *AuthState
	var buf []string // non-nil even when empty
	switch n := e.strings; {
	case n <= 8:
		b := new(struct {
			s AuthState
			a [8]string
		})
		s, buf = &b.s, b.a[:n]
	case n <= 16:
		b := new(struct {
			s AuthState
			a [16]string
		})
		s, buf = &b.s, b.a[:n]
	case n <= 32:
		b := new(struct {
			s AuthState
			a [32]string
		})
		s, buf = &b.s, b.a[:n]
	default:
		s, buf = new(AuthState), make([]string, n)
	}
	*s = e.state
	s.CacheAge = time.Duration(ageMS) * time.Millisecond
	s.Identities = carve(&buf, e.state.Identities)
	s.Scopes = carve(&buf, e.state.Scopes)
	s.Audience = carve(&buf, e.state.Audience)
	s.Groups = carve(&buf, e.state.Groups)
	s.Principals = carve(&buf, e.state.Principals)
	return s
}

// carve copies src to the front of *buf and returns that part with its capacity limited to
// its length (so that appending to it never writes over the next one); nil stays nil.
func carve(buf *[]string, src []string) []string {
	if src == nil {
		return nil
	}
	n := copy(*buf, src)
	out := (*buf)[:n:n]
	*buf = (*buf)[n:]
	return out
}

// reset empties the memo.
func (m *stateMemo) reset() {
	if m == nil {
		return
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			m.unfront(e)
		}
		sh.m, sh.bytes = nil, 0
		sh.mu.Unlock()
	}
}

// close empties the memo for good.
func (m *stateMemo) close() {
	if m != nil {
		m.closed.Store(true)
		m.reset()
	}
}

// len is the number of entries.
func (m *stateMemo) len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// size is the sum of the entries' sizes.
func (m *stateMemo) size() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += sh.bytes
		sh.mu.RUnlock()
	}
	return n
}

// capacity is the most entries the memo holds.
func (m *stateMemo) capacity() int { return m.perShard * memoShards }
