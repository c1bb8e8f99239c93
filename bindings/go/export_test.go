package tokenchecker

import "context"

// Internals the external tests use.
var (
	RawTryCheckAnswer  = rawTryCheckAnswer
	RawTryCheckAnswers = rawTryCheckAnswers
	CheckABI           = checkABI
	ABIError           = abiError
)

const MemoDefaultBytes = memoDefaultBytes

// HeaderABIVersion and LibraryABIVersion are the generations of the header compiled with and of
// the library loaded.
func HeaderABIVersion() uint32  { return headerABIVersion() }
func LibraryABIVersion() uint32 { return libraryABIVersion() }

// CheckViaDocument is Check through the library's result document (decoded with encoding/json),
// the path of fetch_groups "eager": what the handle path must equal.
func CheckViaDocument(c *Checker, ctx context.Context, token string) (*AuthState, CallInfo, error) {
	return c.viaDocument(ctx, token, nil)
}

// MemoStats are the process memo's entries, their counted bytes and its bound for them (all 0
// when it is off).
func MemoStats() (entries, bytes, maxBytes int) {
	m := processMemo()
	if m == nil {
		return 0, 0, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries()), m.bytes, m.maxBytes
}

// MemoHas reports whether the process memo holds the state s (by identity).
func MemoHas(s *AuthState) bool {
	m := processMemo()
	if m == nil {
		return false
	}
	for _, e := range m.entries() {
		if &e.state == s {
			return true
		}
	}
	return false
}

// WithMemo runs f with the process memo replaced by one of maxBytes (0: off), then puts the
// process's back. Not concurrent with calls: tests that use it do not run in parallel.
func WithMemo(c *Checker, maxBytes int, f func()) {
	saved := c.memo
	defer func() { c.memo = saved }()
	c.memo = nil
	if maxBytes > 0 {
		c.memo = newAnswerMemo(maxBytes)
	}
	f()
}

// CheckerMemoStats are c's memo's entries, bytes and bound (WithMemo's, say).
func CheckerMemoStats(c *Checker) (entries, bytes, maxBytes int) {
	m := c.memo
	if m == nil {
		return 0, 0, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries()), m.bytes, m.maxBytes
}

// EvictBehindC empties c's memo's slots but leaves the ids C reads, as an eviction between
// C's look and Go's would.
func EvictBehindC(c *Checker) {
	for i := range c.memo.slots {
		c.memo.slots[i].Store(nil)
	}
}

// entries are the memo's entries.
func (m *answerMemo) entries() []*memoEntry {
	var out []*memoEntry
	for i := range m.slots {
		if e := m.slots[i].Load(); e != nil {
			out = append(out, e)
		}
	}
	return out
}
