package tokenchecker

// Internals the external tests use.
var (
	RawTryCheck      = rawTryCheck
	RawTryCheckCLoop = rawTryCheckCLoop
	RawAuthorize     = rawAuthorize
)
var CheckABI = checkABI

// The result memo's size and bound; SetMemoCapacity replaces it (before any call).
func MemoLen(c *Checker) int                   { return c.memo.len() }
func MemoCap(c *Checker) int                   { return c.memo.capacity() }
func SetMemoCapacity(c *Checker, capacity int) { c.memo = newStateMemo(capacity) }
