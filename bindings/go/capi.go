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
	if err := noNUL(s, what); err != nil {
		return nil, err
	}
	return C.CString(s), nil
}

// noNUL refuses a string that cannot cross the C ABI intact (see cString); the error is an
// *Error.
func noNUL(s, what string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &Error{
			Code:    StatusInvalidArgument,
			Message: what + " contains a NUL byte; pass the value without it",
		}
	}
	return nil
}

func freeCString(p *C.char) {
	C.free(unsafe.Pointer(p))
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
