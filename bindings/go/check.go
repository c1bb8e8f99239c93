package tokenchecker

/*
#include <stdlib.h>
#include "tcgo.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
	"runtime/cgo"
	"strings"
	"time"
	"unsafe"
)

// Check checks a token: active, within its validity window, carrying the expected scopes and
// audience, with an identity set. A cached answer returns at once, without a goroutine or an
// allocation (even when ctx is done: it costs no I/O); otherwise Check waits for the library
// or for ctx (then ctx.Err(); the abandoned check completes and caches its answer in the
// background). The state is shared and read-only (see AuthState); CheckInfo also says where
// the answer came from.
func (c *Checker) Check(ctx context.Context, token string) (*AuthState, error) {
	s, _, err := c.CheckInfo(ctx, token)
	return s, err
}

// CheckInfo is Check, with where the answer came from and how old it is.
func (c *Checker) CheckInfo(ctx context.Context, token string) (*AuthState, CallInfo, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, CallInfo{}, err
	}
	if c != nil && c.eager { // the result has groups: only the document carries them
		return c.viaDocument(ctx, token, nil)
	}
	return c.answer(ctx, token, nil)
}

// AuthorizeOptions are an authorization's flags: AllowPublic lets "public" match anyone with a
// valid token, AllowAllAuthenticatedUsers "all_authenticated_users" any caller with an identity.
type AuthorizeOptions struct {
	AllowPublic                bool
	AllowAllAuthenticatedUsers bool
}

// Authorize checks the token as Check does, then whether the caller is one of the allowed
// principals ("urn:globus:auth:identity:…" (IdentityPrincipal), "urn:globus:groups:id:…"
// (GroupPrincipal), "public", "all_authenticated_users"): AuthState.Matched is the one that
// matched; ErrNotAuthorized when none did; ErrAuthUnavailable when only the caller's groups
// could decide and could not be fetched (they are fetched only when the list names a group and
// nothing cheaper matched). When the library can decide from its in-process cache it answers
// at once, as Check does, without an allocation.
//
// The request is compiled into a Policy once and kept (a few dozen distinct requests; more are
// compiled per call): AuthorizePolicy with a Policy of your own saves the lookup, and says
// where the answer came from. The state is shared and read-only, as Check's.
func (c *Checker) Authorize(ctx context.Context, token string, allowedPrincipals []string, opts AuthorizeOptions) (*AuthState, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	p, err := cachedPolicy(allowedPrincipals, opts)
	if err != nil {
		return nil, err
	}
	s, _, err := c.AuthorizePolicy(ctx, token, p)
	return s, err
}

// AuthorizePolicy is Authorize with a compiled policy, and the call's CallInfo. Matched, in
// the state and in CallInfo, is the policy's principal that matched (the same string for every
// call). The state is shared and read-only (one per answer and principal that matched); a
// cached authorization, groups included, allocates nothing.
func (c *Checker) AuthorizePolicy(ctx context.Context, token string, p *Policy) (*AuthState, CallInfo, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, CallInfo{}, err
	}
	if p == nil {
		return nil, CallInfo{}, &Error{Code: StatusInvalidArgument, Message: "the policy is nil; create one with NewPolicy"}
	}
	if c != nil && c.eager { // the result has groups: only the document carries them
		return c.viaDocument(ctx, token, p)
	}
	return c.answer(ctx, token, p)
}

// answer is a check (p nil) or an authorization on the handle path: tc_try_check_answer or
// tc_try_authorize_answer, the state from the memo (built from the answer's fields on a miss);
// when the library would block, the async call fills its cache, then the handle path answers.
func (c *Checker) answer(ctx context.Context, token string, p *Policy) (*AuthState, CallInfo, error) {
	op := C.int(C.TCGO_CHECK)
	if p != nil {
		op = C.TCGO_AUTHORIZE
	}
	for keep := false; ; keep = true {
		r, err := c.call(op, token, nil, p, 0, !keep)
		if err != nil {
			return nil, CallInfo{}, err
		}
		switch status := Status(r.status); status {
		case StatusOK:
			info := CallInfo{CacheSource: sourceName(r.source), CacheAge: time.Duration(r.age_ms) * time.Millisecond}
			if p != nil {
				info.Matched = p.principal(r.matched)
			}
			if s := c.memo.state(uint64(r.id), r.answer, r.fields, info.Matched); s != nil {
				return s, info, nil
			} // else released in C as one the memo held, which has evicted it since: ask again
		case StatusWouldBlock:
			C.tc_string_free(r.doc)
			return c.wait(ctx, op, token, p)
		default:
			err := errorFromDoc(status, cBytes(r.doc, r.doc_len))
			C.tc_string_free(r.doc)
			return nil, CallInfo{}, err
		}
	}
}

// wait runs the async call of op (tc_check_async or tc_authorize_async, which fill the
// library's cache) and waits for it or for ctx; then the handle path answers from the cache,
// with the async result's source and age. When it cannot (the entry is gone already: a cache
// timeout of 0, a purge meanwhile; or the checker was closed meanwhile), the async result's
// document is the answer.
func (c *Checker) wait(ctx context.Context, op C.int, token string, p *Policy) (*AuthState, CallInfo, error) {
	async, req := C.int(C.TCGO_CHECK_ASYNC), []byte(nil)
	if p != nil {
		async, req = C.TCGO_AUTHORIZE_ASYNC, p.request
	}
	status, doc, err := c.async(ctx, async, token, req)
	if err != nil {
		return nil, CallInfo{}, err
	}
	if status != StatusOK {
		return nil, CallInfo{}, errorFromDoc(status, doc)
	}
	var fetched struct { // the fetch's source and age
		Cache struct {
			Source string `json:"source"`
			AgeMS  int64  `json:"age_ms"`
		} `json:"cache"`
	}
	_ = json.Unmarshal(doc, &fetched) // the library's document: it decodes
	info := CallInfo{CacheSource: fetched.Cache.Source, CacheAge: time.Duration(fetched.Cache.AgeMS) * time.Millisecond}
	// (closed meanwhile, the checker or the policy: the async call, started before, answers)
	if r, err := c.call(op, token, nil, p, 0, false); err == nil {
		C.tc_string_free(r.doc)
		if Status(r.status) == StatusOK {
			if p != nil {
				info.Matched = p.principal(r.matched)
			}
			return c.memo.state(uint64(r.id), r.answer, r.fields, info.Matched), info, nil
		}
	}
	s, err := stateResult(status, doc)
	if err != nil {
		return nil, CallInfo{}, err
	}
	if p != nil {
		info.Matched = p.intern(s.Matched)
	}
	s.CacheSource, s.CacheAge, s.Matched = "", 0, info.Matched
	return s, info, nil
}

// viaDocument is Check (p nil) or an authorization through the result document, which has
// groups: a state of its own (Matched set for an authorization), and the call's CallInfo.
func (c *Checker) viaDocument(ctx context.Context, token string, p *Policy) (*AuthState, CallInfo, error) {
	try, async, req := C.int(C.TCGO_TRY_CHECK), C.int(C.TCGO_CHECK_ASYNC), []byte(nil)
	if p != nil {
		try, async, req = C.TCGO_TRY_AUTHORIZE, C.TCGO_AUTHORIZE_ASYNC, p.request
	}
	r, err := c.call(try, token, req, nil, 0, false)
	if err != nil {
		return nil, CallInfo{}, err
	}
	defer C.tc_string_free(r.doc)
	status, doc := Status(r.status), cBytes(r.doc, r.doc_len)
	if status == StatusWouldBlock {
		if status, doc, err = c.async(ctx, async, token, req); err != nil {
			return nil, CallInfo{}, err
		}
	}
	s, err := stateResult(status, doc)
	if err != nil {
		return nil, CallInfo{}, err
	}
	info := CallInfo{CacheSource: s.CacheSource, CacheAge: s.CacheAge}
	if p != nil {
		info.Matched = p.intern(s.Matched)
	}
	s.CacheSource, s.CacheAge, s.Matched = "", 0, info.Matched
	return s, info, nil
}

// DependentToken checks the token, then returns a dependent token (Globus Auth's
// dependent-token grant) for scope — a scope string or a resource server name — to call
// another service on the caller's behalf; ErrNotAuthorized when the grant gave none for that
// scope. Dependent tokens are cached for their lifetime less a margin. A token whose check
// fails from the cache fails at once; otherwise ctx is honoured as by Check.
func (c *Checker) DependentToken(ctx context.Context, token, scope string) (*DependentToken, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	} else if err := noNUL(scope, "the scope"); err != nil {
		return nil, err
	}
	r, err := c.call(C.TCGO_CHECK, token, nil, nil, 0, false)
	if err != nil {
		return nil, err
	}
	C.tc_answer_free(r.answer)
	defer C.tc_string_free(r.doc)
	if status := Status(r.status); status != StatusOK && status != StatusWouldBlock {
		return nil, errorFromDoc(status, cBytes(r.doc, r.doc_len))
	}
	status, doc, err := c.async(ctx, C.TCGO_DEPENDENT_TOKEN_ASYNC, token, append([]byte(scope), 0))
	if err != nil {
		return nil, err
	}
	return dependentResult(status, doc)
}

// Purge removes everything cached for one token (its introspection, groups and dependent
// tokens) from every cache layer, when it is revoked say. The token need not be valid.
func (c *Checker) Purge(token string) error {
	return c.purge(C.TCGO_PURGE, token, "the token",
		"cannot purge the token: it is empty, too long, or holds characters a bearer token cannot hold")
}

// PurgeIdentity removes everything cached for tokens of one identity (an identity id or its
// "urn:globus:auth:identity:" principal) from this process's cache.
func (c *Checker) PurgeIdentity(identityID string) error {
	return c.purge(C.TCGO_PURGE_IDENTITY, identityID, "the identity id",
		"cannot purge the identity: pass a non-empty identity id")
}

// purge runs tc_purge or tc_purge_identity; invalid is the message of TC_INVALID_ARGUMENT.
func (c *Checker) purge(op C.int, s, what, invalid string) error {
	if err := noNUL(s, what); err != nil {
		return err
	}
	r, err := c.call(op, s, nil, nil, 0, false)
	if err != nil {
		return err
	}
	// The memo keeps its entries: they are keyed by answer, and the library never answers
	// with a purged answer again (a refetch is a new answer, with a new id).
	switch status := Status(r.status); {
	case status == StatusOK:
		return nil
	case status == StatusInvalidArgument:
		return &Error{Code: status, Message: invalid}
	}
	return &Error{Code: Status(r.status), Message: "the purge failed"}
}

// call runs tcgo_call (token without NUL, arg nil or NUL-terminated, p for TCGO_AUTHORIZE,
// known: C may release answers the memo holds) under the checker's read lock, and the
// policy's.
func (c *Checker) call(op C.int, token string, arg []byte, p *Policy, handle cgo.Handle, known bool) (C.tcgo_result, error) {
	h := c.acquire()
	if h == nil {
		return C.tcgo_result{}, ErrClosed
	}
	var policy *C.tc_policy
	if p != nil {
		if policy = p.acquire(); policy == nil {
			h.mu.RUnlock()
			return C.tcgo_result{}, ErrPolicyClosed
		}
	}
	carg := (*C.char)(unsafe.Pointer(unsafe.SliceData(arg))) // nil: NULL
	var ids *C.uint64_t
	var mask C.uint64_t
	if known {
		ids, mask = c.memo.known()
	}
	r := C.tcgo_call(op, h.ptr, (*C.char)(unsafe.Pointer(unsafe.StringData(token))), C.size_t(len(token)),
		carg, policy, C.uintptr_t(handle), ids, mask)
	if p != nil {
		p.h.mu.RUnlock()
	}
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	runtime.KeepAlive(p)
	return r, nil
}

// async starts one of the TCGO_*_ASYNC calls (the library copies the inputs and takes its own
// reference to the checker) and waits for its callback or for ctx.
func (c *Checker) async(ctx context.Context, op C.int, token string, arg []byte) (Status, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	ch := make(chan asyncResult, 1)
	handle := cgo.NewHandle(ch)
	r, err := c.call(op, token, arg, nil, handle, false)
	if err == nil && Status(r.status) != StatusOK {
		err = &Error{Code: Status(r.status), Message: "the library could not start the call"}
	}
	if err != nil {
		handle.Delete() // not started: the callback will never run
		return 0, nil, err
	}
	select {
	case r := <-ch:
		return r.status, r.doc, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// cBytes is C memory as a slice (valid while the C memory is).
func cBytes(p *C.char, n C.size_t) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// noNUL refuses a string C would cut short ("good\x00junk" would be checked as "good").
func noNUL(s, what string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &Error{Code: StatusInvalidArgument, Message: what + " contains a NUL byte; pass the value without it"}
	}
	return nil
}

// rawTryCheckAnswer is the benchmarks' baseline (cgo is not allowed in test files): only
// tc_try_check_answer and tc_answer_free through cgo while next(), the token a C string.
func rawTryCheckAnswer(c *Checker, token string, next func() bool) Status {
	ctok := C.CString(token)
	defer C.free(unsafe.Pointer(ctok))
	var answer *C.tc_answer
	status := C.tc_status(0)
	for next() {
		status = C.tc_try_check_answer(c.h.ptr, ctok, &answer, nil, nil)
		C.tc_answer_free(answer)
	}
	runtime.KeepAlive(c)
	return Status(status)
}

// rawTryCheckAnswers is the same baseline cycling through tokens: tc_try_check_answer, or
// tc_try_authorize_answer with p, and tc_answer_free (fields: and tc_answer_fields, as a memo
// miss does; the library builds them on the first read).
func rawTryCheckAnswers(c *Checker, tokens []string, p *Policy, fields bool, next func() bool) Status {
	ctoks := make([]*C.char, len(tokens))
	for i, t := range tokens {
		ctoks[i] = C.CString(t)
	}
	defer func() {
		for _, p := range ctoks {
			C.free(unsafe.Pointer(p))
		}
	}()
	var answer *C.tc_answer
	var matched C.size_t
	status := C.tc_status(0)
	for i := 0; next(); i++ {
		if i == len(ctoks) {
			i = 0
		}
		if p == nil {
			status = C.tc_try_check_answer(c.h.ptr, ctoks[i], &answer, nil, nil)
		} else {
			status = C.tc_try_authorize_answer(c.h.ptr, ctoks[i], p.h.ptr, &answer, nil, &matched, nil)
		}
		if fields && answer != nil {
			C.tc_answer_fields(answer)
		}
		C.tc_answer_free(answer)
		if status != C.TC_OK {
			break
		}
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(p)
	return Status(status)
}

// asyncResult is what a native completion delivers to the waiting Go call.
type asyncResult struct {
	status Status
	doc    []byte
}

// tcgoComplete runs once per started call, on a library thread; it never blocks (room in ch).
//
//export tcgoComplete
func tcgoComplete(handle C.uintptr_t, status C.tc_status, json *C.char) {
	h := cgo.Handle(handle)
	ch := h.Value().(chan asyncResult)
	h.Delete()
	ch <- asyncResult{status: Status(status), doc: takeDoc(json)}
}
