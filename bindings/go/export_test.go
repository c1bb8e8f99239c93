package tokenchecker

// Internals the external tests use.
var (
	RawTryCheckAnswer = rawTryCheckAnswer
	CheckABI          = checkABI
	ABIError          = abiError
)

// HeaderABIVersion and LibraryABIVersion are the generations of the header compiled with and of
// the library loaded.
func HeaderABIVersion() uint32  { return headerABIVersion() }
func LibraryABIVersion() uint32 { return libraryABIVersion() }

// The answer memo's size, bound and ids; SetMemoCapacity replaces it (before any call).
func MemoLen(c *Checker) int                   { return len(c.memo.entries()) }
func MemoCap(c *Checker) int                   { return len(c.memo.slots) }
func SetMemoCapacity(c *Checker, capacity int) { c.memo = newAnswerMemo(capacity) }
func MemoIDs(c *Checker) []uint64 {
	var ids []uint64
	for _, e := range c.memo.entries() {
		ids = append(ids, e.id)
	}
	return ids
}

// entries are the memo's entries.
func (m *answerMemo) entries() []*decoded {
	var out []*decoded
	for i := range m.slots {
		if e := m.slots[i].Load(); e != nil {
			out = append(out, e)
		}
	}
	return out
}

// EvictBehindC empties the memo's slots but leaves the ids C reads, as an eviction between
// C's look and Go's would.
func EvictBehindC(c *Checker) {
	for i := range c.memo.slots {
		c.memo.slots[i].Store(nil)
	}
}
