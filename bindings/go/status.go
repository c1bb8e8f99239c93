package tokenchecker

// Status is a tc_status code of the C ABI. Values never change.
type Status uint32

// The library's status codes (TC_OK … TC_WOULD_BLOCK in tokenchecker.h).
const (
	StatusOK                  Status = 0  // TC_OK
	StatusInvalidArgument     Status = 1  // TC_INVALID_ARGUMENT
	StatusInvalidConfig       Status = 2  // TC_INVALID_CONFIG
	StatusInactiveToken       Status = 3  // TC_INACTIVE_TOKEN
	StatusInsufficientScope   Status = 4  // TC_INSUFFICIENT_SCOPE
	StatusWrongAudience       Status = 5  // TC_WRONG_AUDIENCE
	StatusTokenExpired        Status = 6  // TC_TOKEN_EXPIRED
	StatusNotAuthorized       Status = 7  // TC_NOT_AUTHORIZED
	StatusCredentialsRejected Status = 8  // TC_CREDENTIALS_REJECTED
	StatusAuthUnavailable     Status = 9  // TC_AUTH_UNAVAILABLE
	StatusPanic               Status = 10 // TC_PANIC
	StatusWouldBlock          Status = 11 // TC_WOULD_BLOCK
	maxKnownStatus                   = StatusWouldBlock
)

var statusNames = [...]string{
	StatusOK:                  "TC_OK",
	StatusInvalidArgument:     "TC_INVALID_ARGUMENT",
	StatusInvalidConfig:       "TC_INVALID_CONFIG",
	StatusInactiveToken:       "TC_INACTIVE_TOKEN",
	StatusInsufficientScope:   "TC_INSUFFICIENT_SCOPE",
	StatusWrongAudience:       "TC_WRONG_AUDIENCE",
	StatusTokenExpired:        "TC_TOKEN_EXPIRED",
	StatusNotAuthorized:       "TC_NOT_AUTHORIZED",
	StatusCredentialsRejected: "TC_CREDENTIALS_REJECTED",
	StatusAuthUnavailable:     "TC_AUTH_UNAVAILABLE",
	StatusPanic:               "TC_PANIC",
	StatusWouldBlock:          "TC_WOULD_BLOCK",
}

// String is the C name of the status ("TC_INACTIVE_TOKEN"), as in the library's error
// documents and as the library's tc_status_name says (a test compares every value); a value
// this binding doesn't know is named by the library (StatusName), "TC_UNKNOWN" if it doesn't
// know it either.
func (s Status) String() string {
	if s <= maxKnownStatus {
		return statusNames[s]
	}
	return StatusName(s)
}

// IsTokenProblem reports whether the status blames the caller's token (inactive, expired,
// wrong scope or audience): the client should get a new token. HTTP servers answer 401.
func (s Status) IsTokenProblem() bool {
	switch s {
	case StatusInactiveToken, StatusInsufficientScope, StatusWrongAudience, StatusTokenExpired:
		return true
	}
	return false
}
