package tokenchecker

/*
#include "tcgo.h"
*/
import "C"

import (
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The answer memo: the AuthState built from each answer (tc_answer_fields), keyed by the
// answer's id (tc_answer_id: unique for the life of the process, never reused, so an entry is
// never stale), following the memo rule stated in tokenchecker.h beside tc_answer_id:
//
//   - One memo per process, shared by every Checker (derived ones too: an answer's fields do
//     not depend on the checker's rules, which the library applies on every call).
//   - Bounded by bytes, never by a count: TOKENCHECKER_MEMO_BYTES in the environment, read once
//     (when the first Checker is created); a decimal number of bytes; default 16 MiB
//     (memoDefaultBytes); 0 turns the memo off (every call then builds its state); a value
//     that is not a number is the default.
//   - An entry counts the bytes of its strings as stored (one buffer per entry: an identity's
//     principal and the identity share their bytes, as do a sub equal to an identity, an email
//     equal to the username and an audience equal to the client id), 16 bytes per item of its
//     lists (the string headers), and a fixed overhead of memoEntryOverhead = 448 bytes per
//     entry: the entry with its AuthState (a 416-byte allocation on 64-bit platforms) and the
//     allocator's rounding of its other two. An authorization's state (the entry's state with
//     Matched set, kept with the entry for each principal that matched, up to
//     memoMaxAuthorized = 3) counts memoStateBytes = 416 more: a copy of the AuthState with
//     the principal (a 416-byte allocation; the strings are the entry's). The table of slots,
//     24 bytes per slot and one slot per 256 bytes of the bound, is allocated when the memo
//     starts and counted in the bound too (entries get the rest). TestMemoEntrySizeCoversTheHeap
//     checks the accounting against the Go heap.
//   - A miss costs one tc_answer_fields read and three allocations (the entry, the string
//     headers, the bytes), never a JSON parse.
//
// Layout: 2-way set-associative; a set is chosen by the id's low bits (ids are sequential, so
// the sets fill evenly). A set's ids and sizes share 32 bytes of table (one cache line), which
// C reads, so that a call finding its answer's id there releases the answer in C, in the same
// cgo call (tcgo_call); the entries' pointers are in slots. A new entry takes an empty way of
// its set or the other's (the one not hit lately, else the older answer); when the bytes would
// pass the bound, a hand goes round the table evicting entries not hit since its last turn
// (CLOCK: a hit sets its slot's referenced bit, the hand clears it). The table alone says what
// to evict (no entry is read: at 100k tokens each would be a cache miss). Lookups take no
// lock (a hit writes its referenced bit once per turn of the hand); changes hold mu. States
// are immutable: every caller of a cached answer gets the same *AuthState (and every caller
// of one of its authorizations the same one with Matched), which nobody may modify.

const (
	memoDefaultBytes   = 16 << 20
	memoEntryOverhead  = 448 // bytes per entry besides its strings (see above)
	memoStateBytes     = 416 // per authorization's state kept with an entry (see above)
	memoMaxAuthorized  = 3   // authorizations' states kept per entry (the entry is 416 bytes)
	memoListItemBytes  = 16  // per item of an entry's lists: a string header
	memoBytesPerSlot   = 256 // the table has one slot per this many bytes of the bound
	memoSlotBytes      = 24  // a slot: its id (8), its size (8) and its entry pointer (8)
	memoMaxSlots       = 1 << 22
	identityPrefix     = "urn:globus:auth:identity:"
	groupPrefix        = "urn:globus:groups:id:"
	groupsNotFetched   = "not_fetched"
	memoBytesVariable  = "TOKENCHECKER_MEMO_BYTES"
	identityPrefixSize = len(identityPrefix)
)

type answerMemo struct {
	setMask uint64
	// table has four words per set: the ids of its two ways' entries (0: empty), which C
	// reads, and their sizes. A way's id is stored after its slot, and cleared before it.
	table    []atomic.Uint64
	slots    []atomic.Pointer[memoEntry] // two per set
	mu       sync.Mutex                  // held by changes
	bytes    int                         // the entries' sizes
	maxBytes int                         // for the entries: the bound less the table
	hand     uint64                      // the slot evicted last for want of bytes
}

// memoEntry is what the binding built from one answer: its state, immutable, and the states
// of its authorizations, one per principal that matched, each added on first use and never
// replaced. id and authorized come first: a hit reads them together (one cache line).
type memoEntry struct {
	id         uint64
	authorized [memoMaxAuthorized]atomic.Pointer[authorizedState]
	size       int // counted against the bound; changes under mu
	state      AuthState
}

// authorizedState is an entry's state with Matched set; matched first, for the lookup.
type authorizedState struct {
	matched string
	state   AuthState
}

// id and size are slot i's words in the table. The size word's top bit is the slot's
// referenced bit (memoReferenced), set by a hit and cleared by the hand going past.
func (m *answerMemo) id(i uint64) *atomic.Uint64   { return &m.table[i>>1<<2|i&1] }
func (m *answerMemo) size(i uint64) *atomic.Uint64 { return &m.table[i>>1<<2|2|i&1] }

const memoReferenced = 1 << 63

// processMemo is the process's memo, nil when TOKENCHECKER_MEMO_BYTES is 0.
var processMemo = sync.OnceValue(func() *answerMemo {
	if n := memoBytes(os.Getenv(memoBytesVariable)); n > 0 {
		return newAnswerMemo(n)
	}
	return nil
})

// memoBytes is the bound a TOKENCHECKER_MEMO_BYTES value sets.
func memoBytes(v string) int {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
	if err != nil {
		return memoDefaultBytes
	}
	return int(min(n, 1<<62))
}

// newAnswerMemo is a memo bounded by maxBytes (> 0), its table included.
func newAnswerMemo(maxBytes int) *answerMemo {
	slots := 2
	if n := maxBytes / memoBytesPerSlot; n > 2 {
		slots = min(1<<bits.Len(uint(n-1)), memoMaxSlots)
	}
	return &answerMemo{setMask: uint64(slots/2 - 1), table: make([]atomic.Uint64, 2*slots),
		slots: make([]atomic.Pointer[memoEntry], slots), maxBytes: max(maxBytes-slots*memoSlotBytes, 0)}
}

// known is the table C reads (nil: no memo).
func (m *answerMemo) known() (*C.uint64_t, C.uint64_t) {
	if m == nil {
		return nil, 0
	}
	return (*C.uint64_t)(unsafe.Pointer(&m.table[0])), C.uint64_t(m.setMask)
}

// lookup is the entry of an id. It reads the set's ids first (the line C has just read), and
// loads only a way whose id matches; the entry's own id is the proof (an id stored in the
// table may be cleared and its slot refilled meanwhile).
func (m *answerMemo) lookup(id uint64) *memoEntry {
	i := 2 * (id & m.setMask)
	for w := i; w < i+2; w++ {
		if m.id(w).Load() == id {
			if e := m.slots[w].Load(); e != nil && e.id == id {
				if size := m.size(w); size.Load()&memoReferenced == 0 { // written once per turn
					size.Or(memoReferenced)
				}
				return e
			}
		}
	}
	return nil
}

// state is the AuthState of a successful TCGO_CHECK or TCGO_AUTHORIZE call's answer: the
// memo's, or built from fields and kept; for an authorization (matched not ""), the state of
// that answer with Matched set. It releases ref, the call's reference to the answer (which
// fields' memory belongs to). nil when C released the answer (ref is nil) as one the memo held
// and the memo has evicted it since: the caller asks again, keeping the reference.
func (m *answerMemo) state(id uint64, ref *C.tc_answer, fields *C.tc_fields, matched string) *AuthState {
	var e *memoEntry
	if m != nil {
		e = m.lookup(id)
	}
	if ref != nil {
		if e == nil {
			e = buildEntry(id, fields)
			if m != nil {
				e = m.put(e)
			}
		}
		C.tc_answer_free(ref)
	}
	if e == nil {
		return nil
	}
	if matched != "" {
		return m.authorized(e, matched)
	}
	return &e.state
}

// authorized is e's state with Matched set to matched: kept with the entry (up to
// memoMaxAuthorized, each counted as memoStateBytes) when the entry is in the memo, so that
// cached authorizations allocate nothing either.
func (m *answerMemo) authorized(e *memoEntry, matched string) *AuthState {
	for i := range e.authorized {
		a := e.authorized[i].Load()
		if a == nil {
			break
		}
		if a.matched == matched {
			return &a.state
		}
	}
	a := &authorizedState{matched: matched, state: e.state}
	a.state.Matched = matched
	if m == nil {
		return &a.state
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := 2 * (e.id & m.setMask)
	if m.slots[i].Load() != e {
		if i++; m.slots[i].Load() != e {
			return &a.state // evicted meanwhile: not kept
		}
	}
	for k := range e.authorized {
		switch old := e.authorized[k].Load(); {
		case old != nil && old.matched == matched: // another goroutine built it meanwhile
			return &old.state
		case old == nil:
			e.authorized[k].Store(a)
			e.size += memoStateBytes
			m.size(i).Store(uint64(e.size) | m.size(i).Load()&memoReferenced)
			m.bytes += memoStateBytes
			m.makeRoom(0) // may evict e itself: its states stay valid for their callers
			return &a.state
		}
	}
	return &a.state // e keeps memoMaxAuthorized already
}

// older reports whether way a of a set should go before way b: not referenced since the hand
// went past when b was, or else the older answer (the smaller id). Under mu.
func (m *answerMemo) older(a, b uint64) bool {
	ra, rb := m.size(a).Load()&memoReferenced != 0, m.size(b).Load()&memoReferenced != 0
	if ra != rb {
		return rb
	}
	return m.id(a).Load() < m.id(b).Load()
}

// makeRoom evicts entries until n more bytes fit: the hand goes round the table (CLOCK),
// clearing the referenced bits it finds and evicting the first entry without one, so that
// entries hit since its last turn stay. After two turns it evicts what it finds (hits may set
// bits again meanwhile). Under mu; it reads only the table.
func (m *answerMemo) makeRoom(n int) {
	mask := uint64(len(m.slots) - 1)
	for steps := 0; m.bytes+n > m.maxBytes; steps++ {
		m.hand = (m.hand + 1) & mask
		if size := m.size(m.hand); steps < 2*len(m.slots) && size.Load()&memoReferenced != 0 {
			size.And(^uint64(memoReferenced))
			continue
		}
		m.evict(m.hand)
	}
}

// put keeps e (unless an entry of its id is there already: that one is returned) in place of
// the older answer of its set, evicting others while the bytes would pass the bound. An entry
// bigger than the whole bound is returned without being kept. It reads only the table, not
// the entries it evicts.
func (m *answerMemo) put(e *memoEntry) *memoEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.lookup(e.id); old != nil {
		return old
	}
	if e.size > m.maxBytes {
		return e
	}
	i := 2 * (e.id & m.setMask)
	if m.id(i).Load() != 0 && (m.id(i+1).Load() == 0 || m.older(i+1, i)) {
		i++
	}
	m.evict(i)
	m.makeRoom(e.size)
	m.slots[i].Store(e)
	m.size(i).Store(uint64(e.size))
	m.id(i).Store(e.id)
	m.bytes += e.size
	return e
}

// evict empties slot i. Under mu.
func (m *answerMemo) evict(i uint64) {
	if m.id(i).Load() != 0 {
		m.bytes -= int(m.size(i).Load() &^ memoReferenced)
		m.id(i).Store(0)
		m.size(i).Store(0)
		m.slots[i].Store(nil)
	}
}

// reset empties the memo.
func (m *answerMemo) reset() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.slots {
		m.evict(uint64(i))
	}
}

// cstr is a tc_str's bytes (C memory; nil for an absent or empty string).
func cstr(s C.tc_str) []byte {
	if s.ptr == nil || s.len == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len))
}

// clist is a tc_str_list's items (C memory).
func clist(l C.tc_str_list) []C.tc_str {
	if l.items == nil || l.len == 0 {
		return nil
	}
	return unsafe.Slice(l.items, int(l.len))
}

// same reports whether two present strings have the same bytes.
func same(a, b C.tc_str) bool {
	return a.ptr != nil && b.ptr != nil && string(cstr(a)) == string(cstr(b))
}

// arena hands out strings stored one after the other in one buffer, sized beforehand: it never
// grows, so the strings it gave stay valid (and are never written again).
type arena struct{ buf []byte }

func (a *arena) add(prefix string, s []byte) string {
	n := len(prefix) + len(s)
	if n == 0 {
		return ""
	}
	if len(a.buf)+n > cap(a.buf) {
		panic("tokenchecker: the answer's strings outgrew their buffer") // a bug in buildEntry
	}
	start := len(a.buf)
	a.buf = append(append(a.buf, prefix...), s...)
	return unsafe.String(&a.buf[start], n)
}

// buildEntry builds an answer's AuthState from its fields (C memory, valid during the call),
// deriving the rest of a check's result as the library's result document does: the effective
// identity and the identity principals; groups not fetched.
func buildEntry(id uint64, f *C.tc_fields) *memoEntry {
	identities, scopes, aud := clist(f.identities), clist(f.scopes), clist(f.aud)
	sub, username, email, clientID := f.sub, f.username, f.email, f.client_id
	subAt := -1 // the identity that is the sub, whose principal is the effective identity
	if sub.ptr != nil {
		for i := range identities {
			if same(identities[i], sub) {
				subAt = i
				break
			}
		}
	}
	emailIsUsername := same(email, username)
	size := 0 // the buffer: every string stored once
	for _, s := range identities {
		size += identityPrefixSize + int(s.len)
	}
	if sub.ptr != nil && subAt < 0 {
		size += identityPrefixSize + int(sub.len)
	}
	size += int(username.len) + int(f.name.len) + int(clientID.len)
	if !emailIsUsername {
		size += int(email.len)
	}
	for _, s := range scopes {
		size += int(s.len)
	}
	for _, s := range aud {
		if !same(s, clientID) {
			size += int(s.len)
		}
	}

	a := arena{make([]byte, 0, size)}
	n, k := len(identities), len(scopes)
	lists := make([]string, 2*n+k+len(aud))
	// Each list's capacity is its length: an append to one copies rather than writing over
	// the next (though states are read-only, an append to a read slice is a common idiom).
	principals, ids := lists[:n:n], lists[n:2*n:2*n]
	scopeList, audList := lists[2*n:2*n+k:2*n+k], lists[2*n+k:]
	for i, s := range identities {
		principals[i] = a.add(identityPrefix, cstr(s))
		ids[i] = principals[i][identityPrefixSize:]
	}
	e := &memoEntry{id: id, size: cap(a.buf) + memoListItemBytes*len(lists) + memoEntryOverhead}
	st := &e.state
	st.Active = bool(f.active)
	switch {
	case subAt >= 0:
		st.EffectiveIdentity = principals[subAt]
	case sub.ptr != nil:
		st.EffectiveIdentity = a.add(identityPrefix, cstr(sub))
	}
	if st.EffectiveIdentity != "" {
		st.Sub = st.EffectiveIdentity[identityPrefixSize:]
	}
	st.Username = a.add("", cstr(username))
	st.Name = a.add("", cstr(f.name))
	st.ClientID = a.add("", cstr(clientID))
	st.Email = st.Username
	if !emailIsUsername {
		st.Email = a.add("", cstr(email))
	}
	for i, s := range scopes {
		scopeList[i] = a.add("", cstr(s))
	}
	for i, s := range aud {
		if same(s, clientID) {
			audList[i] = st.ClientID
		} else {
			audList[i] = a.add("", cstr(s))
		}
	}
	st.Identities, st.Principals, st.Scopes, st.Audience = ids, principals, scopeList, audList
	unix := func(has C.bool, t C.int64_t) time.Time {
		if !has {
			return time.Time{}
		}
		return time.Unix(int64(t), 0)
	}
	st.Expiry, st.NotBefore, st.IssuedAt = unix(f.has_exp, f.exp), unix(f.has_nbf, f.nbf), unix(f.has_iat, f.iat)
	st.GroupsStatus = groupsNotFetched
	return e
}

// sources are tc_answer_meta's sources (static C strings) as Go strings, learned on first
// sight: a call's source is then a pointer comparison, without a copy.
var sources struct {
	mu    sync.Mutex
	known atomic.Pointer[[]sourceEntry] // replaced, never modified
}

type sourceEntry struct {
	p *C.char
	s string
}

func sourceName(p *C.char) string {
	if p == nil {
		return ""
	}
	if t := sources.known.Load(); t != nil {
		for _, e := range *t {
			if e.p == p {
				return e.s
			}
		}
	}
	sources.mu.Lock()
	defer sources.mu.Unlock()
	var t []sourceEntry
	if old := sources.known.Load(); old != nil {
		t = append(t, *old...)
	}
	s := C.GoString(p)
	if len(t) < 64 { // the library has a handful; never grow without bound
		t = append(t, sourceEntry{p, s})
		sources.known.Store(&t)
	}
	return s
}
