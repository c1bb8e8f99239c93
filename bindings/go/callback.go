package tokenchecker

// The completion callback of the library's *_async functions. A file with //export may hold
// only declarations in its preamble: the trampoline that calls tcgoComplete is in capi.go.

/*
#include <stdint.h>
#include "tokenchecker.h"
*/
import "C"

import "runtime/cgo"

// asyncResult is what a native completion delivers to the waiting Go call.
type asyncResult struct {
	status Status
	doc    []byte
}

// tcgoComplete runs on one of the library's runtime threads, exactly once per started call.
// It copies the document into Go memory, releases the C string, frees the handle and hands
// the result to a channel with room for it, so it never blocks, whether or not the caller is
// still waiting (a cancelled caller has gone; the buffered value is then garbage collected).
//
//export tcgoComplete
func tcgoComplete(handle C.uintptr_t, status C.tc_status, json *C.char) {
	h := cgo.Handle(handle)
	ch := h.Value().(chan asyncResult)
	h.Delete()
	ch <- asyncResult{status: Status(status), doc: takeDoc(json)}
}
