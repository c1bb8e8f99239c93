package tokenchecker

/*
#include <stdint.h>
#include "tokenchecker.h"

// The C side of the async calls: a trampoline from the library's tc_callback to the exported
// Go function tcgoComplete (callback.go), and starters that pass a runtime/cgo.Handle as
// user_data, converting the integer to a pointer here rather than in Go (where go vet rightly
// flags uintptr-to-unsafe.Pointer conversions).
extern void tcgoComplete(uintptr_t handle, tc_status status, char *json);

static void tcgo_trampoline(void *user_data, tc_status status, char *json) {
	tcgoComplete((uintptr_t)user_data, status, json);
}

static tc_status tcgo_check_async(const tc_checker *c, const char *token, uintptr_t h) {
	return tc_check_async(c, token, tcgo_trampoline, (void *)h);
}

static tc_status tcgo_authorize_async(const tc_checker *c, const char *token, const char *req,
                                      uintptr_t h) {
	return tc_authorize_async(c, token, req, tcgo_trampoline, (void *)h);
}

static tc_status tcgo_dependent_token_async(const tc_checker *c, const char *token,
                                            const char *scope, uintptr_t h) {
	return tc_dependent_token_async(c, token, scope, tcgo_trampoline, (void *)h);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
	"runtime/cgo"
	"strings"
)

// Check checks a token: active, within its validity window, carrying the expected scopes and
// audience, with an identity set.
//
// A cached answer is returned at once, without a goroutine or a channel (even when ctx is
// already done: it costs no I/O). Otherwise the check runs in the library and Check waits for
// it or for ctx, whichever comes first: a cancelled or expired ctx returns ctx.Err() at once,
// and the abandoned check completes in the background (its answer is still cached).
func (c *Checker) Check(ctx context.Context, token string) (*AuthState, error) {
	ctok, err := cString(token, "the token")
	if err != nil {
		return nil, err
	}
	defer freeCString(ctok)
	status, out, err := c.tryCheck(ctok)
	if err != nil {
		return nil, err
	}
	if status != StatusWouldBlock {
		// Decoded straight from the library's memory, then released.
		state, err := stateResult(status, docView(out))
		C.tc_string_free(out)
		return state, err
	}
	C.tc_string_free(out)
	status, doc, err := c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_check_async(p, ctok, h)
	})
	if err != nil {
		return nil, err
	}
	return stateResult(status, doc)
}

// AuthorizeOptions are the flags of an authorization request.
type AuthorizeOptions struct {
	// AllowPublic lets "public" in the allowed principals match anyone with a valid token.
	AllowPublic bool
	// AllowAllAuthenticatedUsers lets "all_authenticated_users" match any caller with an
	// identity.
	AllowAllAuthenticatedUsers bool
}

const groupPrefix = "urn:globus:groups:id:"

// Authorize checks the token as Check does, then whether the caller is one of the allowed
// principals ("urn:globus:auth:identity:…", "urn:globus:groups:id:…", "public",
// "all_authenticated_users"). On success AuthState.Matched is the principal that matched;
// ErrNotAuthorized when none did; ErrAuthUnavailable when only the caller's groups could
// decide and they could not be fetched. Groups are fetched only when the list names a group
// and nothing cheaper matched.
//
// Fast path: when the token's check is cached and the list names no group, Authorize answers
// without going async (the library then decides from its in-process cache).
func (c *Checker) Authorize(ctx context.Context, token string, allowedPrincipals []string, opts AuthorizeOptions) (*AuthState, error) {
	if allowedPrincipals == nil {
		allowedPrincipals = []string{}
	}
	req, err := json.Marshal(struct {
		AllowedPrincipals          []string `json:"allowed_principals"`
		AllowPublic                bool     `json:"allow_public"`
		AllowAllAuthenticatedUsers bool     `json:"allow_all_authenticated_users"`
	}{allowedPrincipals, opts.AllowPublic, opts.AllowAllAuthenticatedUsers})
	if err != nil {
		return nil, &Error{Code: StatusInvalidArgument, Message: "cannot encode the authorization request: " + err.Error()}
	}
	ctok, err := cString(token, "the token")
	if err != nil {
		return nil, err
	}
	defer freeCString(ctok)
	creq, err := cString(string(req), "the authorization request")
	if err != nil {
		return nil, err
	}
	defer freeCString(creq)

	// The library has no non-blocking tc_authorize. tc_try_check tells whether the check
	// itself is cached: a failure is final (tc_authorize checks first and would fail alike);
	// a success without group principals means tc_authorize needs nothing but that cached
	// answer, so it does not block on the network (unless the entry expires or is purged in
	// the microseconds between the two calls: then this one call blocks for at most the
	// configured timeouts, without watching ctx).
	status, out, err := c.tryCheck(ctok)
	if err != nil {
		return nil, err
	}
	var doc []byte
	if status != StatusOK && status != StatusWouldBlock {
		err = errorFromDoc(status, docView(out))
	}
	C.tc_string_free(out)
	switch {
	case err != nil:
		return nil, err
	case status == StatusWouldBlock:
	case !namesGroup(allowedPrincipals):
		status, doc, err = c.blocking(func(p *C.tc_checker, out **C.char) C.tc_status {
			return C.tc_authorize(p, ctok, creq, out)
		})
		if err != nil {
			return nil, err
		}
		return stateResult(status, doc)
	}
	status, doc, err = c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_authorize_async(p, ctok, creq, h)
	})
	if err != nil {
		return nil, err
	}
	return stateResult(status, doc)
}

func namesGroup(principals []string) bool {
	for _, p := range principals {
		if strings.HasPrefix(p, groupPrefix) {
			return true
		}
	}
	return false
}

// DependentToken checks the token, then returns a dependent token (Globus Auth's
// dependent-token grant) for scope — a scope string or a resource server name — to call
// another service on the caller's behalf. ErrNotAuthorized when the grant gave no token for
// that scope. Dependent tokens are cached for their lifetime less a margin.
//
// A token whose check fails from the cache fails at once; otherwise the call goes async and
// honours ctx as Check does.
func (c *Checker) DependentToken(ctx context.Context, token, scope string) (*DependentToken, error) {
	ctok, err := cString(token, "the token")
	if err != nil {
		return nil, err
	}
	defer freeCString(ctok)
	cscope, err := cString(scope, "the scope")
	if err != nil {
		return nil, err
	}
	defer freeCString(cscope)
	status, out, err := c.tryCheck(ctok)
	if err != nil {
		return nil, err
	}
	if status != StatusOK && status != StatusWouldBlock {
		err = errorFromDoc(status, docView(out))
	}
	C.tc_string_free(out)
	if err != nil {
		return nil, err
	}
	status, doc, err := c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_dependent_token_async(p, ctok, cscope, h)
	})
	if err != nil {
		return nil, err
	}
	return dependentResult(status, doc)
}

// tryCheck runs tc_try_check under the read lock. The document is the library's: release it
// with tc_string_free after use.
func (c *Checker) tryCheck(ctok *C.char) (Status, *C.char, error) {
	h := c.acquire()
	if h == nil {
		return 0, nil, ErrClosed
	}
	var out *C.char
	status := Status(C.tc_try_check(h.ptr, ctok, &out))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	return status, out, nil
}

// blocking runs a blocking call with a result document under the read lock.
func (c *Checker) blocking(call func(*C.tc_checker, **C.char) C.tc_status) (Status, []byte, error) {
	h := c.acquire()
	if h == nil {
		return 0, nil, ErrClosed
	}
	var out *C.char
	status := Status(call(h.ptr, &out))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	return status, takeDoc(out), nil
}

// async starts a call with one of the tcgo_*_async helpers and waits for its callback or for
// ctx. The read lock is held only while the call starts (the library copies the inputs and
// takes its own reference to the checker before returning), so the C strings may be freed
// and the checker closed as soon as async returns, whatever the native work still does.
func (c *Checker) async(ctx context.Context, start func(*C.tc_checker, C.uintptr_t) C.tc_status) (Status, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	ch := make(chan asyncResult, 1)
	handle := cgo.NewHandle(ch)
	h := c.acquire()
	if h == nil {
		handle.Delete()
		return 0, nil, ErrClosed
	}
	status := Status(start(h.ptr, C.uintptr_t(handle)))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	if status != StatusOK {
		// Not started: the callback will never run.
		handle.Delete()
		return 0, nil, &Error{Code: status, Message: "the library could not start the call"}
	}
	done := ctx.Done()
	if done == nil {
		r := <-ch
		return r.status, r.doc, nil
	}
	select {
	case r := <-ch:
		return r.status, r.doc, nil
	case <-done:
		return 0, nil, ctx.Err()
	}
}
