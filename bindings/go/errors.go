package tokenchecker

/*
#include "tokenchecker.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
)

// Error is a failure reported by the library (or found by this binding before calling it).
// Match a kind with errors.Is(err, ErrInactiveToken) (codes are compared, not messages), or
// read the code with errors.As. Messages never contain a token or a secret.
type Error struct {
	Code    Status
	Message string
}

// Error returns "tokenchecker: <message> (TC_CODE; <what to do>)".
func (e *Error) Error() string {
	msg, code := e.Message, e.Code.String()
	if msg == "" {
		msg = "failed"
	}
	if hint := hints[e.Code]; hint != "" {
		code += "; " + hint
	}
	return "tokenchecker: " + msg + " (" + code + ")"
}

// Is reports whether target is an *Error with the same code: errors.Is(err, ErrInactiveToken).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

// Sentinels, one per status, for errors.Is (returned errors carry the library's message).
var (
	ErrInvalidArgument     = &Error{StatusInvalidArgument, "invalid argument"}
	ErrInvalidConfig       = &Error{StatusInvalidConfig, "invalid configuration"}
	ErrInactiveToken       = &Error{StatusInactiveToken, "the token is not active"}
	ErrInsufficientScope   = &Error{StatusInsufficientScope, "the token lacks the expected scopes"}
	ErrWrongAudience       = &Error{StatusWrongAudience, "the token is meant for another audience"}
	ErrTokenExpired        = &Error{StatusTokenExpired, "the token has expired or is not valid yet"}
	ErrNotAuthorized       = &Error{StatusNotAuthorized, "the caller is none of the allowed principals"}
	ErrCredentialsRejected = &Error{StatusCredentialsRejected, "the authorization server rejected this service's client credentials"}
	ErrAuthUnavailable     = &Error{StatusAuthUnavailable, "the authorization server or the Groups API is unavailable"}
	ErrPanic               = &Error{StatusPanic, "internal error in the tokenchecker library"}
	ErrWouldBlock          = &Error{StatusWouldBlock, "the call would block"}
)

// ErrClosed is returned by every method of a Checker after Close.
var ErrClosed = errors.New("tokenchecker: the checker is closed; create a new one with New")

// ErrPolicyClosed is returned by AuthorizePolicy with a Policy after its Close.
var ErrPolicyClosed = errors.New("tokenchecker: the policy is closed; create a new one with NewPolicy")

// hints say what to do about an error of each kind.
var hints = map[Status]string{
	StatusInvalidArgument:     "pass a non-empty bearer token of visible ASCII characters, within max_token_bytes",
	StatusInvalidConfig:       "fix the configuration key named in the message",
	StatusInactiveToken:       "the client must obtain a new access token",
	StatusTokenExpired:        "the client must obtain a new access token",
	StatusInsufficientScope:   "the client must request a token with the expected scopes",
	StatusWrongAudience:       "the client must request a token for this service",
	StatusNotAuthorized:       "the caller needs to be granted access",
	StatusCredentialsRejected: "check client_id and client_secret",
	StatusAuthUnavailable:     "retry later; check auth_url, groups_url and the network",
	StatusPanic:               "this is a library bug, please report it; the process is still usable",
	StatusWouldBlock:          "use the blocking or context-aware call instead",
}

// errorFromDoc builds the error of a failed call from its status and error document
// {"error": {"code": "TC_…", "message": "…"}}; the status is authoritative.
func errorFromDoc(status Status, doc []byte) *Error {
	var wire struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(doc, &wire)
	if wire.Error.Message == "" {
		wire.Error.Message = "the library reported " + status.String() + " without a message"
	}
	return &Error{Code: status, Message: wire.Error.Message}
}

// Status is a tc_status code of the C ABI. Values never change.
type Status uint32

// The library's status codes: the values of tc_status in tokenchecker.h (TC_OK …
// TC_WOULD_BLOCK), taken from the header by cgo.
const (
	StatusOK                  Status = C.TC_OK
	StatusInvalidArgument     Status = C.TC_INVALID_ARGUMENT
	StatusInvalidConfig       Status = C.TC_INVALID_CONFIG
	StatusInactiveToken       Status = C.TC_INACTIVE_TOKEN
	StatusInsufficientScope   Status = C.TC_INSUFFICIENT_SCOPE
	StatusWrongAudience       Status = C.TC_WRONG_AUDIENCE
	StatusTokenExpired        Status = C.TC_TOKEN_EXPIRED
	StatusNotAuthorized       Status = C.TC_NOT_AUTHORIZED
	StatusCredentialsRejected Status = C.TC_CREDENTIALS_REJECTED
	StatusAuthUnavailable     Status = C.TC_AUTH_UNAVAILABLE
	StatusPanic               Status = C.TC_PANIC
	StatusWouldBlock          Status = C.TC_WOULD_BLOCK
)

// String is the C name of the status ("TC_INACTIVE_TOKEN"), as in the library's error
// documents: the library's tc_status_name (StatusName), "TC_UNKNOWN" for a code it does not
// know.
func (s Status) String() string { return StatusName(s) }

// IsTokenProblem reports whether the status blames the caller's token (inactive, expired,
// wrong scope or audience): the client should get a new token. HTTP servers answer 401.
func (s Status) IsTokenProblem() bool {
	switch s {
	case StatusInactiveToken, StatusInsufficientScope, StatusWrongAudience, StatusTokenExpired:
		return true
	}
	return false
}
