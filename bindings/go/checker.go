package tokenchecker

/*
#include <stdlib.h>
#include <string.h>
#include "tokenchecker.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Checker checks bearer tokens with the tokenchecker library. It is safe for concurrent use by
// any number of goroutines. Release it with Close; a checker that is garbage collected without
// Close is released then, but don't rely on that.
type Checker struct {
	h       *handle
	memo    *answerMemo // the process's (memo.go); nil when TOKENCHECKER_MEMO_BYTES is 0
	cleanup runtime.Cleanup
	scopes  []string // expected_scopes (tc_checker_info), for the insufficient_scope challenge
	eager   bool     // fetch_groups "eager" (tc_checker_info): results have groups
}

// handle owns the C checker (apart from Checker, for the cleanup). Calls hold the read lock
// while C uses ptr (async ones while starting: the work takes its own reference); free takes
// the write lock, so tc_free never runs during a call, and later calls find ptr nil.
type handle struct {
	mu  sync.RWMutex
	ptr *C.tc_checker
}

// New creates a checker. With VerifyCredentials (the default) it introspects once, and fails
// with ErrCredentialsRejected when the server refuses the client credentials (not when it is
// unreachable). With CacheConfig it replaces the process-wide cache.
func New(cfg Config) (*Checker, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	doc, err := cfg.JSON()
	if err != nil {
		return nil, err
	}
	if err := noNUL(doc, "the configuration"); err != nil {
		err.(*Error).Code = StatusInvalidConfig
		return nil, err
	}
	cdoc := C.CString(doc)
	defer C.free(unsafe.Pointer(cdoc))
	var ptr *C.tc_checker
	var cerr *C.char
	if status := Status(C.tc_new(cdoc, &ptr, &cerr)); status != StatusOK {
		return nil, errorFromDoc(status, takeDoc(cerr))
	}
	return newChecker(ptr)
}

// Rules are what a derived checker (Checker.Derive) checks differently from its parent: the
// keys tc_derive takes (LibraryInfo().RuleKeys). Zero values keep the parent's.
type Rules struct {
	ExpectedScopes   []string `json:"expected_scopes,omitempty"`
	ScopeMatch       string   `json:"scope_match,omitempty"`       // "any" or "all"
	ExpectedAudience string   `json:"expected_audience,omitempty"` // default: the parent's
	LeewayS          *int     `json:"leeway_s,omitempty"`          // seconds, 0–3600
}

// Derive creates a checker with other rules (per-route expected scopes, say) that shares c's
// HTTP client, connection pool and request slots (MaxConcurrentRequests stays one cap for
// both), and, as every checker, the process's cache: cheap, no request to Globus, no thread.
// The derived checker is independent of c once created: close each when done (in any order).
func (c *Checker) Derive(rules Rules) (*Checker, error) {
	doc, err := json.Marshal(rules)
	if err != nil {
		return nil, &Error{Code: StatusInvalidConfig, Message: "cannot encode the rules: " + err.Error()}
	}
	if err := noNUL(string(doc), "the rules"); err != nil { // JSON escapes NUL: never
		return nil, err
	}
	h := c.acquire()
	if h == nil {
		return nil, ErrClosed
	}
	cdoc := C.CString(string(doc))
	defer C.free(unsafe.Pointer(cdoc))
	var ptr *C.tc_checker
	var cerr *C.char
	status := Status(C.tc_derive(h.ptr, cdoc, &ptr, &cerr))
	h.mu.RUnlock()
	runtime.KeepAlive(c)
	if status != StatusOK {
		return nil, errorFromDoc(status, takeDoc(cerr))
	}
	return newChecker(ptr)
}

// newChecker owns a new C checker: its settings from tc_checker_info (never from the
// configuration: the library's reading of it is the one that counts).
func newChecker(ptr *C.tc_checker) (*Checker, error) {
	var out *C.char
	status := Status(C.tc_checker_info(ptr, &out))
	doc := takeDoc(out)
	var info struct {
		ExpectedScopes []string `json:"expected_scopes"`
		FetchGroups    string   `json:"fetch_groups"`
	}
	if status == StatusOK {
		if err := json.Unmarshal(doc, &info); err != nil {
			status, doc = StatusPanic, nil
		}
	}
	if status != StatusOK {
		C.tc_free(ptr)
		return nil, errorFromDoc(status, doc)
	}
	h := &handle{ptr: ptr}
	c := &Checker{h: h, memo: processMemo(), scopes: info.ExpectedScopes, eager: info.FetchGroups == "eager"}
	c.cleanup = runtime.AddCleanup(c, (*handle).free, h)
	return c, nil
}

// Close releases the checker once calls using it in C return (async work completes on its own
// reference); later calls return ErrClosed. Idempotent; always nil.
func (c *Checker) Close() error {
	if c != nil && c.h != nil {
		c.cleanup.Stop()
		c.h.free()
		runtime.KeepAlive(c)
	}
	return nil
}

// acquire read-locks h for a C call (h.mu.RUnlock() after); nil when closed or a zero Checker.
func (c *Checker) acquire() *handle {
	if c == nil || c.h == nil {
		return nil
	}
	c.h.mu.RLock()
	if c.h.ptr == nil {
		c.h.mu.RUnlock()
		return nil
	}
	return c.h
}

func (h *handle) free() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ptr != nil {
		C.tc_free(h.ptr)
		h.ptr = nil
	}
}

// checkABI refuses a header or a library of another C ABI generation than this module's
// (ABIVersion): a module version that does not match the installed library, or a stale
// libtokenchecker.so found first on the library path.
func checkABI() error {
	return abiError(uint32(C.TOKENCHECKER_ABI_VERSION), uint32(C.tc_abi_version()))
}

// abiError is checkABI's verdict for the header's and the library's generations.
func abiError(header, library uint32) error {
	if header != ABIVersion {
		return &Error{Code: StatusInvalidConfig, Message: fmt.Sprintf(
			"this tokenchecker Go module (%s) is written for C ABI %d but was compiled with a "+
				"tokenchecker.h of C ABI %d (library %s); use the module version that matches the "+
				"installed library, or install the library this module was released with",
			LibraryVersion, ABIVersion, header, Version())}
	}
	if library != header {
		return &Error{Code: StatusInvalidConfig, Message: fmt.Sprintf(
			"the tokenchecker library %s has C ABI %d but this binding was built for ABI %d; "+
				"rebuild the binding against the library's header, or load the matching library",
			Version(), library, header)}
	}
	return nil
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.tc_version()) }

// Library is what the library says of itself (tc_library_info): the one source of the facts
// every binding shares.
type Library struct {
	Version    string            `json:"version"`
	ABIVersion uint32            `json:"abi_version"`
	Statuses   map[string]Status `json:"statuses"`    // "TC_OK": 0, …
	Sources    []string          `json:"sources"`     // CallInfo.CacheSource's values
	ConfigKeys []string          `json:"config_keys"` // Config's JSON keys
	RuleKeys   []string          `json:"rule_keys"`   // Rules' JSON keys (Derive)
	// LogLevels are the levels' names (TOKENCHECKER_LOG's, LogLevel.String's) and values.
	LogLevels map[string]LogLevel `json:"log_levels"`
}

// LibraryInfo returns what the library says of itself.
func LibraryInfo() (Library, error) {
	var out *C.char
	status := Status(C.tc_library_info(&out))
	doc := takeDoc(out)
	var l Library
	if status != StatusOK {
		return l, errorFromDoc(status, doc)
	}
	if err := json.Unmarshal(doc, &l); err != nil {
		return l, &Error{Code: StatusPanic, Message: "the library's info document did not decode: " + err.Error()}
	}
	return l, nil
}

// StatusName is the library's name for a status code (tc_status_name), "TC_UNKNOWN" for a code
// it does not know.
func StatusName(s Status) string { return C.GoString(C.tc_status_name(C.uint32_t(s))) }

// Statistics are the library's process-wide counters (all checkers together).
type Statistics struct {
	Checks         uint64 `json:"checks"`
	Hits           uint64 `json:"hits"`
	NegativeHits   uint64 `json:"negative_hits"`
	Misses         uint64 `json:"misses"`
	CoalescedWaits uint64 `json:"coalesced_waits"`
	WaiterTimeouts uint64 `json:"waiter_timeouts"`
	Purges         uint64 `json:"purges"`
	CacheResets    uint64 `json:"cache_resets"`
	Requests       struct {
		Introspect     uint64 `json:"introspect"`
		DependentToken uint64 `json:"dependent_token"`
		Groups         uint64 `json:"groups"`
		Retries        uint64 `json:"retries"`
	} `json:"requests"`
	Errors struct {
		Introspect     uint64 `json:"introspect"`
		DependentToken uint64 `json:"dependent_token"`
		Groups         uint64 `json:"groups"`
		Backend        uint64 `json:"backend"`
	} `json:"errors"`
	Backend struct {
		Hits            uint64 `json:"hits"`
		Misses          uint64 `json:"misses"`
		RejectedEntries uint64 `json:"rejected_entries"`
		BreakerSkips    uint64 `json:"breaker_skips"`
		LockAcquired    uint64 `json:"lock_acquired"`
		LockWaits       uint64 `json:"lock_waits"`
	} `json:"backend"`
	// StaleServed counts answers served stale (CacheSource "stale", Config.StaleIfErrorS).
	StaleServed uint64 `json:"stale_served"`
	// RequestsShed counts requests refused for want of a slot (Config.MaxConcurrentRequests).
	RequestsShed uint64 `json:"requests_shed"`

	Cache struct {
		Backend      string        `json:"backend"`
		Timeout      time.Duration `json:"-"`
		TimeoutS     float64       `json:"timeout_s"`
		LocalEntries uint64        `json:"local_entries"`
		InFlight     uint64        `json:"in_flight"`
	} `json:"cache"`

	// Raw is the whole document, including counters newer than this binding.
	Raw map[string]any `json:"-"`
}

// Stats returns the library's process-wide counters.
func Stats() (*Statistics, error) {
	var out *C.char
	status := Status(C.tc_stats(&out))
	doc := takeDoc(out)
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var s Statistics
	err := json.Unmarshal(doc, &s)
	if err == nil {
		err = json.Unmarshal(doc, &s.Raw)
	}
	if err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's stats document did not decode: " + err.Error()}
	}
	s.Cache.Timeout = time.Duration(s.Cache.TimeoutS * float64(time.Second))
	return &s, nil
}

// takeDoc copies a library-owned document into Go memory and releases it.
func takeDoc(p *C.char) []byte {
	if p == nil {
		return nil
	}
	b := C.GoBytes(unsafe.Pointer(p), C.int(C.strlen(p)))
	C.tc_string_free(p)
	return b
}

// headerABIVersion and libraryABIVersion are the C ABI generations of the header this package
// was compiled with and of the library it runs with (for the tests: _test files cannot use cgo).
func headerABIVersion() uint32  { return uint32(C.TOKENCHECKER_ABI_VERSION) }
func libraryABIVersion() uint32 { return uint32(C.tc_abi_version()) }
