package tokenchecker

/*
#include "tokenchecker.h"
*/
import "C"

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// AuthState is what a successful check learned about the caller. Each call returns its own,
// with its own slices: modifying one affects no other.
type AuthState struct {
	Active            bool     // always true for a successful check
	Sub               string   // the identity id the token was issued to
	EffectiveIdentity string   // "urn:globus:auth:identity:<Sub>"
	Identities        []string // every linked identity id
	Username          string
	Name              string
	Email             string
	ClientID          string   // the client the token was issued to
	Scopes            []string // the token's scopes
	Audience          []string
	Expiry            time.Time // zero when the answer had none
	NotBefore         time.Time
	IssuedAt          time.Time

	// Groups are the ids of the groups the caller is an active member of; nil unless they
	// were fetched (fetch_groups "eager", or an authorization that needed them).
	Groups          []string
	GroupsAvailable bool
	GroupsStatus    string // "not_fetched", "available" or "unavailable"
	GroupsError     string // why, when GroupsStatus is "unavailable"

	// Principals are the caller's identity principals, then its group principals.
	Principals []string

	// CacheSource is where the answer came from: "network", "coalesced" (another caller's
	// request), "memory", "near", "redis", "memcached" or "stale" (a recent answer served
	// past its cache lifetime while Globus Auth is unavailable: Config.StaleIfErrorS).
	CacheSource string
	CacheAge    time.Duration // age of the cached answer

	// Matched is the allowed principal that authorized the caller (Authorize only).
	Matched string
}

// wireState is the library's result document (every key tagged: exact matches decode faster).
type wireState struct {
	Active            bool     `json:"active"`
	Sub               string   `json:"sub"`
	EffectiveIdentity string   `json:"effective_identity"`
	Identities        []string `json:"identities"`
	Username          string   `json:"username"`
	Name              string   `json:"name"`
	Email             string   `json:"email"`
	ClientID          string   `json:"client_id"`
	Scopes            []string `json:"scopes"`
	Aud               []string `json:"aud"`
	Exp               *int64   `json:"exp"`
	Nbf               *int64   `json:"nbf"`
	Iat               *int64   `json:"iat"`
	Groups            []string `json:"groups"`
	GroupsStatus      string   `json:"groups_status"`
	GroupsError       string   `json:"groups_error"`
	Principals        []string `json:"principals"`
	Cache             struct {
		Source string `json:"source"`
		AgeMS  int64  `json:"age_ms"`
	} `json:"cache"`
	Authorization struct{ Matched string } `json:"authorization"`
}

// stateResult is the Go result of a call's document (C memory, maybe: nothing refers to it).
func stateResult(status Status, doc []byte) (*AuthState, error) {
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var w wireState
	if err := json.Unmarshal(doc, &w); err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's result document did not decode: " + err.Error()}
	}
	return newState(&w), nil
}

// newState is the AuthState of a decoded result document; it shares w's slices.
func newState(w *wireState) *AuthState {
	unix := func(p *int64) time.Time {
		if p == nil {
			return time.Time{}
		}
		return time.Unix(*p, 0)
	}
	return &AuthState{Active: w.Active, Sub: w.Sub, EffectiveIdentity: w.EffectiveIdentity,
		Identities: w.Identities, Username: w.Username, Name: w.Name, Email: w.Email,
		ClientID: w.ClientID, Scopes: w.Scopes, Audience: w.Aud,
		Expiry: unix(w.Exp), NotBefore: unix(w.Nbf), IssuedAt: unix(w.Iat),
		Groups: w.Groups, GroupsAvailable: w.GroupsStatus == "available",
		GroupsStatus: w.GroupsStatus, GroupsError: w.GroupsError, Principals: w.Principals,
		CacheSource: w.Cache.Source, CacheAge: time.Duration(w.Cache.AgeMS) * time.Millisecond,
		Matched: w.Authorization.Matched}
}

// HasPrincipal reports whether p is one of the caller's principals.
func (s *AuthState) HasPrincipal(p string) bool { return slices.Contains(s.Principals, p) }

// DependentToken is a token for another service, to call it on the caller's behalf. It holds
// a secret: String and GoString leave AccessToken out, so logging the struct is safe.
type DependentToken struct {
	AccessToken    string
	Scope          string
	ResourceServer string
	TokenType      string
	ExpiresAt      time.Time
	ExpiresIn      time.Duration // at the time of the call
}

// String describes the token without its secret.
func (t DependentToken) String() string {
	return "tokenchecker.DependentToken{Scope: " + t.Scope + ", ResourceServer: " + t.ResourceServer +
		", TokenType: " + t.TokenType + ", ExpiresAt: " + t.ExpiresAt.UTC().Format(time.RFC3339) +
		", AccessToken: <redacted>}"
}

// GoString keeps %#v from printing the access token.
func (t DependentToken) GoString() string { return t.String() }

func dependentResult(status Status, doc []byte) (*DependentToken, error) {
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var w struct {
		AccessToken    string `json:"access_token"`
		Scope          string
		ResourceServer string `json:"resource_server"`
		TokenType      string `json:"token_type"`
		ExpiresAt      int64  `json:"expires_at"`
		ExpiresIn      int64  `json:"expires_in"`
	}
	err := json.Unmarshal(doc, &w)
	clear(doc) // the document holds the access token: don't leave a copy lying around
	if err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's dependent-token document did not decode: " + err.Error()}
	}
	return &DependentToken{AccessToken: w.AccessToken, Scope: w.Scope, ResourceServer: w.ResourceServer,
		TokenType: w.TokenType, ExpiresAt: time.Unix(w.ExpiresAt, 0),
		ExpiresIn: time.Duration(w.ExpiresIn) * time.Second}, nil
}

// The answer memo (README.md, "Architecture"): decoded answers keyed by tc_answer_id (never
// reused), each text decoded once while its entry lives (under mu). Per checker, 2-way
// set-associative (a new entry takes an empty way or the older answer's), at most
// memoCapacity entries and about memoBytes; lookups take no lock. It keeps no native
// reference: each call releases its own (in C, in the same cgo call, when C finds its id in ids).

const (
	memoCapacity = 4096     // entries per checker
	memoBytes    = 16 << 20 // per checker, about
)

type answerMemo struct {
	setMask  uint64
	ids      []atomic.Uint64 // ids[i] is slots[i]'s id, set after slots[i] (C reads it)
	slots    []atomic.Pointer[decoded]
	mu       sync.Mutex // held by changes
	bytes    int        // the entries' sizes
	maxBytes int
	hand     uint64 // the slot evicted last for want of bytes
}

// decoded is what the binding decoded from an answer; immutable.
type decoded struct {
	id    uint64
	state AuthState // without its slices, CacheSource and CacheAge
	lists []string  // Identities, Scopes, Audience and Principals, one after the other
	ends  [3]int    // where the first three end in lists
	size  int       // about the memory it holds
}

func newAnswerMemo(capacity int) *answerMemo {
	sets := 1
	for sets*4 <= capacity {
		sets *= 2
	}
	return &answerMemo{setMask: uint64(sets - 1), ids: make([]atomic.Uint64, 2*sets),
		slots: make([]atomic.Pointer[decoded], 2*sets), maxBytes: memoBytes}
}

func (m *answerMemo) lookup(id uint64) *decoded {
	i := 2 * (id & m.setMask)
	for _, e := range [2]*decoded{m.slots[i].Load(), m.slots[i+1].Load()} {
		if e != nil && e.id == id {
			return e
		}
	}
	return nil
}

// get is the entry of a successful TCGO_ANSWER call's answer, decoded from text if need be;
// it releases ref, the call's reference to the answer (its text's memory). nil, nil when C
// released it (ref is nil) as one the memo held, and the memo has evicted it since.
func (m *answerMemo) get(id uint64, ref *C.tc_answer, text []byte) (e *decoded, err error) {
	e = m.lookup(id)
	if ref != nil {
		if e == nil {
			e, err = m.add(id, text)
		}
		C.tc_answer_free(ref)
	}
	return e, err
}

// add decodes an answer's text and keeps it, in place of the older answer of its set.
func (m *answerMemo) add(id uint64, text []byte) (*decoded, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.lookup(id); e != nil {
		return e, nil
	}
	e, err := decodeAnswer(id, text)
	if err != nil {
		return nil, err
	}
	i := 2 * (id & m.setMask)
	if a, b := m.slots[i].Load(), m.slots[i+1].Load(); a != nil && (b == nil || b.id < a.id) {
		i++
	}
	m.evict(i)
	for e.size <= m.maxBytes && m.bytes+e.size > m.maxBytes { // over the byte bound: evict in turn
		m.hand = (m.hand + 1) % uint64(len(m.slots))
		m.evict(m.hand)
	}
	if e.size <= m.maxBytes {
		m.slots[i].Store(e)
		m.ids[i].Store(id)
		m.bytes += e.size
	}
	return e, nil
}

// evict empties slot i. Under mu.
func (m *answerMemo) evict(i uint64) {
	if old := m.slots[i].Load(); old != nil {
		m.bytes -= old.size
		m.ids[i].Store(0)
		m.slots[i].Store(nil)
	}
}

// reset empties the memo.
func (m *answerMemo) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.slots {
		m.evict(uint64(i))
	}
}

const identityPrefix = "urn:globus:auth:identity:"

// decodeAnswer decodes tc_answer_text's document and derives the rest of a check's result
// from it, as the library's result document does (effective identity, identity principals;
// groups not fetched).
func decodeAnswer(id uint64, text []byte) (*decoded, error) {
	var w struct {
		wireState
		Sub *string `json:"sub"` // null: no effective identity
	}
	if err := json.Unmarshal(text, &w); err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's answer did not decode: " + err.Error()}
	}
	if w.Sub != nil {
		w.wireState.Sub, w.EffectiveIdentity = *w.Sub, identityPrefix+*w.Sub
	}
	w.Principals = make([]string, len(w.Identities))
	for i, identity := range w.Identities {
		w.Principals[i] = identityPrefix + identity
	}
	w.GroupsStatus = "not_fetched"
	a, b := len(w.Identities), len(w.Identities)+len(w.Scopes) // the text has no null list
	ends, lists := [3]int{a, b, b + len(w.Aud)}, slices.Concat(w.Identities, w.Scopes, w.Aud, w.Principals)
	w.Identities, w.Scopes, w.Aud, w.Principals = nil, nil, nil, nil // result sets them
	return &decoded{id: id, state: *newState(&w.wireState), lists: lists, ends: ends,
		size: 2*len(text) + 16*len(lists) + 512}, nil
}

// withStrings is a result with room for its slices when they are few: one allocation.
type withStrings struct {
	s AuthState
	a [8]string
}

// result is a copy of the entry's state for one caller, with its own slices (the strings are
// shared: Go strings are immutable).
func (e *decoded) result(source string, ageMS uint64) *AuthState {
	r, n := new(withStrings), len(e.lists)
	buf := r.a[:min(n, len(r.a))]
	if n > len(r.a) {
		buf = make([]string, n)
	}
	s := &r.s
	*s = e.state
	s.CacheSource, s.CacheAge = source, time.Duration(ageMS)*time.Millisecond
	// Each slice's capacity is its length: an append to one never writes over the next.
	copy(buf, e.lists)
	a, b, c := e.ends[0], e.ends[1], e.ends[2]
	s.Identities, s.Scopes, s.Audience, s.Principals = buf[:a:a], buf[a:b:b], buf[b:c:c], buf[c:n:n]
	return s
}

var sourceNames = []string{"memory", "near", "network", "coalesced", "redis", "memcached", "stale"}

// sourceName is tc_answer_meta's source (a static C string) as a Go string, without copying
// the known ones.
func sourceName(p *C.char, n C.size_t) string {
	s := unsafe.String((*byte)(unsafe.Pointer(p)), int(n))
	for _, name := range sourceNames {
		if s == name {
			return name
		}
	}
	return strings.Clone(s)
}
