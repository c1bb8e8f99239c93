package tokenchecker

// Internals the external tests use.
var (
	RawTryCheck      = rawTryCheck
	RawTryCheckCLoop = rawTryCheckCLoop
	RawAuthorize     = rawAuthorize
)
var CheckABI = checkABI
