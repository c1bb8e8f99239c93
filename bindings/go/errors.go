package tokenchecker

import (
	"encoding/json"
	"errors"
)

// Error is a failure reported by the library (or found by this binding before calling it).
// Match a kind with errors.Is(err, ErrInactiveToken) (codes are compared, not messages), or
// get the code with errors.As:
//
//	var tcErr *tokenchecker.Error
//	if errors.As(err, &tcErr) && tcErr.Code.IsTokenProblem() { … }
//
// Messages never contain a token or a secret.
type Error struct {
	Code    Status
	Message string
}

// Error returns "tokenchecker: <message> (TC_CODE; <what to do>)".
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "failed"
	}
	if hint := e.Code.hint(); hint != "" {
		return "tokenchecker: " + msg + " (" + e.Code.String() + "; " + hint + ")"
	}
	return "tokenchecker: " + msg + " (" + e.Code.String() + ")"
}

// Is reports whether target is an *Error with the same code, so that every error of one kind
// matches its sentinel: errors.Is(err, ErrInactiveToken).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

// Sentinels, one per status, for errors.Is. Their messages describe the kind of failure; the
// errors actually returned carry the library's own, more precise message.
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

// hint says what to do about an error of this kind.
func (s Status) hint() string {
	switch s {
	case StatusInvalidArgument:
		return "pass a non-empty bearer token of visible ASCII characters, within max_token_bytes"
	case StatusInvalidConfig:
		return "fix the configuration key named in the message"
	case StatusInactiveToken, StatusTokenExpired:
		return "the client must obtain a new access token"
	case StatusInsufficientScope:
		return "the client must request a token with the expected scopes"
	case StatusWrongAudience:
		return "the client must request a token for this service"
	case StatusNotAuthorized:
		return "the caller needs to be granted access"
	case StatusCredentialsRejected:
		return "check client_id and client_secret"
	case StatusAuthUnavailable:
		return "retry later; check auth_url, groups_url and the network"
	case StatusPanic:
		return "this is a library bug, please report it; the process is still usable"
	case StatusWouldBlock:
		return "use the blocking or context-aware call instead"
	}
	return ""
}

// errorFromDoc builds the error of a failed call from its status and error document
// {"error": {"code": "TC_…", "message": "…"}}; the status is authoritative.
func errorFromDoc(status Status, doc []byte) *Error {
	msg, ok := fastErrorMessage(string(doc))
	if !ok {
		var wire struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(doc, &wire) == nil {
			msg = wire.Error.Message
		}
	}
	if msg == "" {
		msg = "the library reported " + status.String() + " without a message"
	}
	return &Error{Code: status, Message: msg}
}

// fastErrorMessage reads the message of an error document with the scanner of decode.go;
// false when encoding/json should decide.
func fastErrorMessage(doc string) (string, bool) {
	s := scanner{b: doc, ok: true}
	msg := ""
	if !s.openObject() {
		return "", false
	}
	for first := true; ; first = false {
		key, ok := s.nextKey(first)
		if !ok {
			break
		}
		if key != "error" || !s.openObject() {
			return "", false
		}
		for first := true; ; first = false {
			key, ok := s.nextKey(first)
			if !ok {
				break
			}
			switch key {
			case "message":
				msg = s.str()
			case "code":
				s.str()
			default:
				return "", false
			}
		}
	}
	s.ws()
	return msg, s.ok && s.i == len(s.b)
}
