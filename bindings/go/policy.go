package tokenchecker

/*
#include <stdlib.h>
#include "tokenchecker.h"
*/
import "C"

import (
	"encoding/binary"
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Policy is an authorization request compiled once by the library (tc_policy_new): the
// allowed principals and the flags, for AuthorizePolicy. Immutable and safe for concurrent
// use by any number of goroutines and checkers. Release it with Close; a policy that is
// garbage collected without Close is released then.
type Policy struct {
	h          *policyHandle
	principals []string // the library's, as Go strings made once: what Matched reports
	request    []byte   // the request document, NUL-terminated (tc_authorize_async's)
	cleanup    runtime.Cleanup
}

// policyHandle owns the C policy (apart from Policy, for the cleanup); calls hold the read
// lock while C uses ptr, free the write lock (as the checker's handle).
type policyHandle struct {
	mu  sync.RWMutex
	ptr *C.tc_policy
}

// NewPolicy compiles an authorization request: the allowed principals
// ("urn:globus:auth:identity:…" (IdentityPrincipal), "urn:globus:groups:id:…"
// (GroupPrincipal), "public", "all_authenticated_users") and the options. ErrInvalidArgument
// for a request the library refuses (a principal holding a NUL byte, say).
func NewPolicy(allowedPrincipals []string, opts AuthorizeOptions) (*Policy, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	if allowedPrincipals == nil {
		allowedPrincipals = []string{}
	}
	req, err := json.Marshal(struct {
		AllowedPrincipals          []string `json:"allowed_principals"`
		AllowPublic                bool     `json:"allow_public"`
		AllowAllAuthenticatedUsers bool     `json:"allow_all_authenticated_users"`
	}{allowedPrincipals, opts.AllowPublic, opts.AllowAllAuthenticatedUsers})
	if err != nil { // cannot happen: strings and booleans
		return nil, &Error{Code: StatusInvalidArgument, Message: "cannot encode the request: " + err.Error()}
	}
	req = append(req, 0)
	var ptr *C.tc_policy
	var cerr *C.char
	if status := Status(C.tc_policy_new((*C.char)(unsafe.Pointer(&req[0])), &ptr, &cerr)); status != StatusOK {
		return nil, errorFromDoc(status, takeDoc(cerr))
	}
	p := &Policy{h: &policyHandle{ptr: ptr}, request: req}
	p.principals = make([]string, int(C.tc_policy_len(ptr)))
	for i := range p.principals {
		var n C.size_t
		s := C.tc_policy_principal(ptr, C.size_t(i), &n)
		p.principals[i] = C.GoStringN(s, C.int(n))
	}
	p.cleanup = runtime.AddCleanup(p, (*policyHandle).free, p.h)
	return p, nil
}

// Principals are the policy's allowed principals, in the request's order (a copy).
func (p *Policy) Principals() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.principals...)
}

// Close releases the policy once calls using it in C return; later calls with it return
// ErrPolicyClosed. Idempotent; always nil.
func (p *Policy) Close() error {
	if p != nil && p.h != nil {
		p.cleanup.Stop()
		p.h.free()
		runtime.KeepAlive(p)
	}
	return nil
}

func (h *policyHandle) free() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ptr != nil {
		C.tc_policy_free(h.ptr)
		h.ptr = nil
	}
}

// acquire read-locks the policy for a C call (p.h.mu.RUnlock() after); nil when closed.
func (p *Policy) acquire() *C.tc_policy {
	if p.h == nil {
		return nil
	}
	p.h.mu.RLock()
	if p.h.ptr == nil {
		p.h.mu.RUnlock()
		return nil
	}
	return p.h.ptr
}

// principal is the principal at a tc_authorize_answer index ("" for TC_NO_MATCH).
func (p *Policy) principal(i C.size_t) string {
	if uint64(i) < uint64(len(p.principals)) {
		return p.principals[i]
	}
	return ""
}

// intern is the policy's string equal to s (a result document's matched principal), or s.
func (p *Policy) intern(s string) string {
	for _, q := range p.principals {
		if q == s {
			return q
		}
	}
	return s
}

// The policies Authorize compiled, by request: a map replaced (never modified) on a change,
// so that lookups take no lock. A service has a handful of rules; past maxCachedPolicies
// distinct requests, one is dropped for each new one (not closed: a call may still use it;
// the garbage collector releases it once unused).
const maxCachedPolicies = 64

var policyCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]*Policy]
}

// cachedPolicy is the compiled policy of a request, compiled on first use.
func cachedPolicy(principals []string, opts AuthorizeOptions) (*Policy, error) {
	var buf [512]byte
	key := policyKey(buf[:0], principals, opts)
	if m := policyCache.m.Load(); m != nil {
		if p := (*m)[string(key)]; p != nil { // no allocation: the compiler looks up the bytes
			return p, nil
		}
	}
	p, err := NewPolicy(principals, opts)
	if err != nil {
		return nil, err
	}
	policyCache.mu.Lock()
	defer policyCache.mu.Unlock()
	next := map[string]*Policy{}
	if old := policyCache.m.Load(); old != nil {
		if q := (*old)[string(key)]; q != nil { // another goroutine compiled it meanwhile
			p.Close()
			return q, nil
		}
		for k, q := range *old {
			if len(next) < maxCachedPolicies-1 {
				next[k] = q
			}
		}
	}
	next[string(key)] = p
	policyCache.m.Store(&next)
	return p, nil
}

// policyKey encodes a request unambiguously: the flags, then each principal's length and
// bytes.
func policyKey(b []byte, principals []string, opts AuthorizeOptions) []byte {
	var flags byte
	if opts.AllowPublic {
		flags |= 1
	}
	if opts.AllowAllAuthenticatedUsers {
		flags |= 2
	}
	b = append(b, flags)
	for _, s := range principals {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}
