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
	"unsafe"
)

// Check checks a token: active, within its validity window, carrying the expected scopes and
// audience, with an identity set. A cached answer returns at once, without a goroutine (even
// when ctx is done: it costs no I/O); otherwise Check waits for the library or for ctx (then
// ctx.Err(); the abandoned check completes and caches its answer in the background). The
// result is the caller's own: modifying it (or its slices) affects no other call.
func (c *Checker) Check(ctx context.Context, token string) (*AuthState, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	if c != nil && c.eager { // the result has groups: only the document carries them
		return c.viaDocument(ctx, token, nil)
	}
	for keep := false; ; keep = true {
		r, err := c.call(C.TCGO_ANSWER, token, nil, 0, !keep)
		if err != nil || Status(r.status) != StatusOK {
			return c.finish(ctx, r, err, C.TCGO_CHECK_ASYNC, token, nil)
		}
		e, err := c.memo.get(uint64(r.id), r.answer, cBytes(r.text, r.text_len))
		if e != nil {
			return e.result(sourceName(r.source, r.source_len), uint64(r.age_ms)), nil
		} else if err != nil {
			return nil, err
		} // else released in C as one the memo held, which has evicted it since: ask again
	}
}

// AuthorizeOptions are an authorization's flags: AllowPublic lets "public" match anyone with a
// valid token, AllowAllAuthenticatedUsers "all_authenticated_users" any caller with an identity.
type AuthorizeOptions struct {
	AllowPublic                bool
	AllowAllAuthenticatedUsers bool
}

// Authorize checks the token as Check does, then whether the caller is one of the allowed
// principals ("urn:globus:auth:identity:…", "urn:globus:groups:id:…", "public",
// "all_authenticated_users"): AuthState.Matched is the one that matched; ErrNotAuthorized
// when none did; ErrAuthUnavailable when only the caller's groups could decide and could not
// be fetched (they are fetched only when the list names a group and nothing cheaper matched).
// When the library can decide from its in-process cache it answers at once, as Check does.
func (c *Checker) Authorize(ctx context.Context, token string, allowedPrincipals []string, opts AuthorizeOptions) (*AuthState, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	req, _ := json.Marshal(struct { // cannot fail
		AllowedPrincipals          []string `json:"allowed_principals"`
		AllowPublic                bool     `json:"allow_public"`
		AllowAllAuthenticatedUsers bool     `json:"allow_all_authenticated_users"`
	}{append([]string{}, allowedPrincipals...), opts.AllowPublic, opts.AllowAllAuthenticatedUsers})
	return c.viaDocument(ctx, token, append(req, 0))
}

// viaDocument is Check (req nil) or Authorize through the result document, which has groups.
func (c *Checker) viaDocument(ctx context.Context, token string, req []byte) (*AuthState, error) {
	try, async := C.int(C.TCGO_TRY_CHECK), C.int(C.TCGO_CHECK_ASYNC)
	if req != nil {
		try, async = C.TCGO_TRY_AUTHORIZE, C.TCGO_AUTHORIZE_ASYNC
	}
	r, err := c.call(try, token, req, 0, false)
	return c.finish(ctx, r, err, async, token, req)
}

// finish decodes a fast-path call's document, or, when it would have blocked, async op's.
func (c *Checker) finish(ctx context.Context, r C.tcgo_result, err error, op C.int, token string, arg []byte) (*AuthState, error) {
	if err != nil {
		return nil, err
	}
	defer C.tc_string_free(r.doc)
	status, doc := Status(r.status), cBytes(r.doc, r.doc_len)
	if status == StatusWouldBlock {
		if status, doc, err = c.async(ctx, op, token, arg); err != nil {
			return nil, err
		}
	}
	return stateResult(status, doc)
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
	r, err := c.call(C.TCGO_ANSWER, token, nil, 0, false)
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
	r, err := c.call(op, s, nil, 0, false)
	if err != nil {
		return err
	}
	c.memo.reset() // it cannot tell a token's entry (it holds none): a purge empties it
	switch status := Status(r.status); {
	case status == StatusOK:
		return nil
	case status == StatusInvalidArgument:
		return &Error{Code: status, Message: invalid}
	}
	return &Error{Code: Status(r.status), Message: "the purge failed"}
}

// call runs tcgo_call (token without NUL, arg nil or NUL-terminated, known: C may release
// answers the memo holds) under the read lock.
func (c *Checker) call(op C.int, token string, arg []byte, handle cgo.Handle, known bool) (C.tcgo_result, error) {
	h := c.acquire()
	if h == nil {
		return C.tcgo_result{}, ErrClosed
	}
	carg := (*C.char)(unsafe.Pointer(unsafe.SliceData(arg))) // nil: NULL
	var ids *C.uint64_t
	if known {
		ids = (*C.uint64_t)(unsafe.Pointer(&c.memo.ids[0]))
	}
	r := C.tcgo_call(op, h.ptr, (*C.char)(unsafe.Pointer(unsafe.StringData(token))), C.size_t(len(token)),
		carg, C.uintptr_t(handle), ids, C.uint64_t(c.memo.setMask))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
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
	r, err := c.call(op, token, arg, handle, false)
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
