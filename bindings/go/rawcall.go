package tokenchecker

// Baselines for the benchmarks (bench_test.go): tc_try_check called through cgo with none of
// this binding's work (no lock, no copy, no decoding), to measure what the Go layer adds.

/*
#include "tokenchecker.h"

static tc_status tcgo_try_check_loop(const tc_checker *c, const char *token, long n) {
	tc_status st = TC_OK;
	for (long i = 0; i < n; i++) {
		char *out = NULL;
		st = tc_try_check(c, token, &out);
		tc_string_free(out);
	}
	return st;
}
*/
import "C"

import "runtime"

// rawTryCheck calls tc_try_check through cgo once per next() == true and frees the document.
func rawTryCheck(c *Checker, token string, next func() bool) Status {
	ctok := C.CString(token)
	defer freeCString(ctok)
	ptr := c.h.ptr
	status := C.tc_status(0)
	for next() {
		var out *C.char
		status = C.tc_try_check(ptr, ctok, &out)
		C.tc_string_free(out)
	}
	runtime.KeepAlive(c)
	return Status(status)
}

// rawTryCheckCLoop calls tc_try_check n times in a C loop: the library's own cost.
func rawTryCheckCLoop(c *Checker, token string, n int) Status {
	ctok := C.CString(token)
	defer freeCString(ctok)
	status := Status(C.tcgo_try_check_loop(c.h.ptr, ctok, C.long(n)))
	runtime.KeepAlive(c)
	return status
}

// rawAuthorize calls the blocking tc_authorize through cgo once per next() == true.
func rawAuthorize(c *Checker, token, request string, next func() bool) Status {
	ctok := C.CString(token)
	defer freeCString(ctok)
	creq := C.CString(request)
	defer freeCString(creq)
	ptr := c.h.ptr
	status := C.tc_status(0)
	for next() {
		var out *C.char
		status = C.tc_authorize(ptr, ctok, creq, &out)
		C.tc_string_free(out)
	}
	runtime.KeepAlive(c)
	return Status(status)
}
