package tokenchecker

// Helpers to move strings across the C ABI.

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tokenchecker.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

// cString copies s into C memory for the duration of one call; release it with freeCString.
// A string holding a NUL byte cannot cross the C ABI intact (C would see only the part before
// it, so "good-token\x00junk" would be checked as "good-token"): it is refused.
func cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{
			Code:    StatusInvalidArgument,
			Message: what + " contains a NUL byte; pass the value without it",
		}
	}
	return C.CString(s), nil
}

func freeCString(p *C.char) {
	C.free(unsafe.Pointer(p))
}

// docView is a library-owned document seen as bytes, without a copy: valid only until the
// document is released with tc_string_free.
func docView(p *C.char) []byte {
	if p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), C.strlen(p))
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
