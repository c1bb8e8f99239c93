package tokenchecker

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tokenchecker.h"

// The fast path of Check, Authorize and DependentToken in one cgo call (each costs a few
// hundred nanoseconds): the token comes as Go bytes with a length and is NUL-terminated here
// on the C stack (no C.CString: no malloc, no free, and the copy is wiped afterwards);
// tc_try_check (request == NULL) or tc_try_authorize runs; a document that fits in the caller's
// buffer (Go memory) is copied there and released, so Go needs neither strlen nor
// tc_string_free. A bigger one is handed over as it is (doc != NULL): Go releases it.
typedef struct {
	tc_status status;
	size_t len;
	char *doc;
} tcgo_try_result;

enum { TCGO_TOKEN_ON_STACK = 1024 };

static tcgo_try_result tcgo_try(const tc_checker *c, const char *token, size_t token_len,
                                const char *request, char *buf, size_t buf_len) {
	char on_stack[TCGO_TOKEN_ON_STACK];
	char *tok = on_stack;
	if (token_len >= sizeof on_stack) {
		tok = malloc(token_len + 1);
		if (tok == NULL) {
			abort(); // as C.CString would
		}
	}
	if (token_len > 0) {
		memcpy(tok, token, token_len);
	}
	tok[token_len] = 0;
	char *out = NULL;
	tcgo_try_result r;
	r.status = request == NULL ? tc_try_check(c, tok, &out) : tc_try_authorize(c, tok, request, &out);
	for (volatile char *p = tok; p < tok + token_len; p++) {
		*p = 0;
	}
	if (tok != on_stack) {
		free(tok);
	}
	r.len = out == NULL ? 0 : strlen(out);
	r.doc = out;
	if (out != NULL && r.len <= buf_len) {
		memcpy(buf, out, r.len);
		tc_string_free(out);
		r.doc = NULL;
	}
	return r;
}

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
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Check checks a token: active, within its validity window, carrying the expected scopes and
// audience, with an identity set.
//
// A cached answer is returned at once, without a goroutine or a channel (even when ctx is
// already done: it costs no I/O). Otherwise the check runs in the library and Check waits for
// it or for ctx, whichever comes first: a cancelled or expired ctx returns ctx.Err() at once,
// and the abandoned check completes in the background (its answer is still cached).
//
// The result is the caller's own: modifying it (or its slices) affects no other call.
func (c *Checker) Check(ctx context.Context, token string) (*AuthState, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	b := docBufs.Get().(*docBuf)
	status, doc, cdoc, err := c.try(token, nil, b)
	if err != nil {
		putDocBuf(b)
		return nil, err
	}
	if status != StatusWouldBlock {
		state, err := c.result(status, doc)
		release(cdoc, b)
		return state, err
	}
	release(cdoc, b)
	ctok := C.CString(token)
	defer freeCString(ctok)
	status, out, err := c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_check_async(p, ctok, h)
	})
	if err != nil {
		return nil, err
	}
	return c.result(status, out)
}

// AuthorizeOptions are the flags of an authorization request.
type AuthorizeOptions struct {
	// AllowPublic lets "public" in the allowed principals match anyone with a valid token.
	AllowPublic bool
	// AllowAllAuthenticatedUsers lets "all_authenticated_users" match any caller with an
	// identity.
	AllowAllAuthenticatedUsers bool
}

// Authorize checks the token as Check does, then whether the caller is one of the allowed
// principals ("urn:globus:auth:identity:…", "urn:globus:groups:id:…", "public",
// "all_authenticated_users"). On success AuthState.Matched is the principal that matched;
// ErrNotAuthorized when none did; ErrAuthUnavailable when only the caller's groups could
// decide and they could not be fetched. Groups are fetched only when the list names a group
// and nothing cheaper matched.
//
// Fast path: when the library can decide from its in-process cache (the token's check is
// cached, and so are the caller's groups if only they can decide), Authorize answers at once,
// as Check does; otherwise it goes async and honours ctx.
func (c *Checker) Authorize(ctx context.Context, token string, allowedPrincipals []string, opts AuthorizeOptions) (*AuthState, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	b := docBufs.Get().(*docBuf)
	b.req = append(appendAuthorizeRequest(b.req[:0], allowedPrincipals, opts), 0)
	status, doc, cdoc, err := c.try(token, b.req, b)
	if err != nil {
		putDocBuf(b)
		return nil, err
	}
	if status != StatusWouldBlock {
		state, err := c.result(status, doc)
		release(cdoc, b)
		return state, err
	}
	creq := (*C.char)(C.CBytes(b.req)) // NUL-terminated
	release(cdoc, b)
	defer freeCString(creq)
	ctok := C.CString(token)
	defer freeCString(ctok)
	status, out, err := c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_authorize_async(p, ctok, creq, h)
	})
	if err != nil {
		return nil, err
	}
	return c.result(status, out)
}

// appendAuthorizeRequest appends the request document of tc_authorize, exactly as
// encoding/json would encode it (TestAuthorizeRequestEncoding), without its reflection and
// allocations.
func appendAuthorizeRequest(b []byte, allowedPrincipals []string, opts AuthorizeOptions) []byte {
	b = append(b, `{"allowed_principals":[`...)
	for i, p := range allowedPrincipals {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p)
	}
	b = append(b, `],"allow_public":`...)
	b = strconv.AppendBool(b, opts.AllowPublic)
	b = append(b, `,"allow_all_authenticated_users":`...)
	b = strconv.AppendBool(b, opts.AllowAllAuthenticatedUsers)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json encodes a string: HTML characters and U+2028,
// U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// DependentToken checks the token, then returns a dependent token (Globus Auth's
// dependent-token grant) for scope — a scope string or a resource server name — to call
// another service on the caller's behalf. ErrNotAuthorized when the grant gave no token for
// that scope. Dependent tokens are cached for their lifetime less a margin.
//
// A token whose check fails from the cache fails at once; otherwise the call goes async and
// honours ctx as Check does.
func (c *Checker) DependentToken(ctx context.Context, token, scope string) (*DependentToken, error) {
	if err := noNUL(token, "the token"); err != nil {
		return nil, err
	}
	if err := noNUL(scope, "the scope"); err != nil {
		return nil, err
	}
	b := docBufs.Get().(*docBuf)
	status, doc, cdoc, err := c.try(token, nil, b)
	if err != nil {
		putDocBuf(b)
		return nil, err
	}
	if status != StatusOK && status != StatusWouldBlock {
		err = errorFromDoc(status, doc)
	}
	release(cdoc, b)
	if err != nil {
		return nil, err
	}
	ctok := C.CString(token)
	defer freeCString(ctok)
	cscope := C.CString(scope)
	defer freeCString(cscope)
	status, out, err := c.async(ctx, func(p *C.tc_checker, h C.uintptr_t) C.tc_status {
		return C.tcgo_dependent_token_async(p, ctok, cscope, h)
	})
	if err != nil {
		return nil, err
	}
	return dependentResult(status, out)
}

// result turns the outcome of a check or an authorization into its Go result, through the
// memo (memo.go). doc may be a reused buffer: nothing returned refers to it.
func (c *Checker) result(status Status, doc []byte) (*AuthState, error) {
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	return c.memo.state(doc)
}

// docBuf receives the documents of the fast path (tcgo_try) in Go memory, and holds the
// request document of Authorize. Pooled: nothing may refer to it once it is put back.
type docBuf struct {
	doc [docBufSize]byte
	req []byte
}

const docBufSize = 8 << 10 // a result with ~50 groups; bigger ones are read from C memory

var docBufs = sync.Pool{New: func() any { return new(docBuf) }}

func putDocBuf(b *docBuf) {
	if cap(b.req) > 64<<10 {
		b.req = nil
	}
	docBufs.Put(b)
}

// release returns the buffer to the pool and frees the library's document, if any.
func release(cdoc *C.char, b *docBuf) {
	if cdoc != nil {
		C.tc_string_free(cdoc)
	}
	putDocBuf(b)
}

// try runs tcgo_try under the read lock: tc_try_check, or with req (a NUL-terminated request
// document) tc_try_authorize. The document is in b.doc, or, when it did not fit, in the
// library's memory (cdoc != nil). Release both with release after use. token holds no NUL.
func (c *Checker) try(token string, req []byte, b *docBuf) (status Status, doc []byte, cdoc *C.char, err error) {
	h := c.acquire()
	if h == nil {
		return 0, nil, nil, ErrClosed
	}
	var creq *C.char
	if req != nil {
		creq = (*C.char)(unsafe.Pointer(&req[0]))
	}
	r := C.tcgo_try(h.ptr, (*C.char)(unsafe.Pointer(unsafe.StringData(token))), C.size_t(len(token)),
		creq, (*C.char)(unsafe.Pointer(&b.doc[0])), C.size_t(len(b.doc)))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	if r.doc != nil {
		return Status(r.status), unsafe.Slice((*byte)(unsafe.Pointer(r.doc)), int(r.len)), r.doc, nil
	}
	return Status(r.status), b.doc[:r.len], nil, nil
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
