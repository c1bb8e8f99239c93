package tokenchecker

/*
#include <stdlib.h>
#include "tokenchecker.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

// Checker checks bearer tokens with the tokenchecker library. It is safe for concurrent use by
// any number of goroutines. Release it with Close; a checker that is garbage collected without
// Close is released then, but don't rely on that.
type Checker struct {
	h       *handle
	memo    *stateMemo // decoded results (memo.go)
	cleanup runtime.Cleanup
	scopes  []string // expected_scopes, for the insufficient_scope challenge (WriteError)
}

// handle owns the C checker. It is separate from Checker so that the cleanup registered on a
// Checker can reach it without keeping the Checker alive.
//
// mu makes Close safe against calls in flight: every call holds the read lock while C uses the
// pointer, and free takes the write lock, so tc_free never runs during a call, and a call
// after free finds ptr nil (ErrClosed). Async calls hold the lock only while starting: the
// library gives the started work its own reference to the checker.
type handle struct {
	mu  sync.RWMutex
	ptr *C.tc_checker
}

// New creates a checker. With VerifyCredentials (the default) it introspects once, and fails
// with ErrCredentialsRejected when the authorization server refuses the client credentials; an
// unreachable server does not make it fail. With CacheConfig it replaces the process-wide
// cache.
func New(cfg Config) (*Checker, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	doc, err := cfg.JSON()
	if err != nil {
		return nil, err
	}
	cdoc, err := cString(doc, "the configuration")
	if err != nil {
		err.(*Error).Code = StatusInvalidConfig
		return nil, err
	}
	defer freeCString(cdoc)
	var ptr *C.tc_checker
	var cerr *C.char
	status := Status(C.tc_new(cdoc, &ptr, &cerr))
	edoc := takeDoc(cerr)
	if status != StatusOK {
		return nil, errorFromDoc(status, edoc)
	}
	h := &handle{ptr: ptr}
	c := &Checker{h: h, memo: newStateMemo(memoCapacity), scopes: cfg.expectedScopes()}
	c.cleanup = runtime.AddCleanup(c, (*handle).free, h)
	return c, nil
}

// Close releases the checker. It waits for calls using the checker in C to return (not for
// async checks to finish: those keep their own reference and complete normally). Later calls
// return ErrClosed. Close is idempotent and always returns nil.
func (c *Checker) Close() error {
	if c == nil || c.h == nil {
		return nil
	}
	c.cleanup.Stop()
	c.h.free()
	c.memo.close()
	runtime.KeepAlive(c)
	return nil
}

// acquire read-locks the checker for one C call, or returns nil when it is closed (or a zero
// Checker). Release with h.mu.RUnlock() as soon as C no longer uses h.ptr.
func (c *Checker) acquire() *handle {
	if c == nil || c.h == nil {
		return nil
	}
	h := c.h
	h.mu.RLock()
	if h.ptr == nil {
		h.mu.RUnlock()
		return nil
	}
	return h
}

func (h *handle) free() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ptr != nil {
		C.tc_free(h.ptr)
		h.ptr = nil
	}
}

// Purge removes everything cached for one token (its introspection, groups and dependent
// tokens) from every cache layer, for example when the token is revoked. The token need not
// be valid.
func (c *Checker) Purge(token string) error {
	ctok, err := cString(token, "the token")
	if err != nil {
		return err
	}
	defer freeCString(ctok)
	// The memo holds no token, so it cannot tell which entry is this token's: it is emptied
	// (it never answers by itself, but a revoked caller's data need not linger in it).
	defer c.memo.reset()
	return c.simple("cannot purge the token: it is empty, too long, or holds characters a bearer token cannot hold",
		func(p *C.tc_checker) C.tc_status { return C.tc_purge(p, ctok) })
}

// PurgeIdentity removes everything cached for tokens of one identity (an identity id or its
// "urn:globus:auth:identity:" principal) from this process's cache.
func (c *Checker) PurgeIdentity(identityID string) error {
	cid, err := cString(identityID, "the identity id")
	if err != nil {
		return err
	}
	defer freeCString(cid)
	defer c.memo.reset()
	return c.simple("cannot purge the identity: pass a non-empty identity id",
		func(p *C.tc_checker) C.tc_status { return C.tc_purge_identity(p, cid) })
}

// simple runs a call without a result document under the read lock.
// invalid is the message of a TC_INVALID_ARGUMENT answer.
func (c *Checker) simple(invalid string, call func(*C.tc_checker) C.tc_status) error {
	h := c.acquire()
	if h == nil {
		return ErrClosed
	}
	status := Status(call(h.ptr))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	switch status {
	case StatusOK:
		return nil
	case StatusInvalidArgument:
		return &Error{Code: status, Message: invalid}
	default:
		return &Error{Code: status, Message: "the purge failed"}
	}
}

// checkABI refuses a library whose C ABI differs from the header this package was built with
// (a stale libtokenchecker.so found first on the library path, say).
func checkABI() error {
	if got, want := uint32(C.tc_abi_version()), uint32(C.TOKENCHECKER_ABI_VERSION); got != want {
		return &Error{Code: StatusInvalidConfig, Message: fmt.Sprintf(
			"the tokenchecker library %s has C ABI %d but this binding was built for ABI %d; "+
				"rebuild the binding against the library's header, or load the matching library",
			Version(), got, want)}
	}
	return nil
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.tc_version())
}

// StatusName is the library's own name for a status code (tc_status_name: as Status.String,
// but asked of the library, so it also knows codes newer than this binding; "TC_UNKNOWN" for
// a code it does not know).
func StatusName(s Status) string {
	return C.GoString(C.tc_status_name(C.uint32_t(s)))
}
