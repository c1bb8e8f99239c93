package tokenchecker

// The library this module is released with. scripts/check-versions keeps them equal to the
// crate's version (Cargo.toml) and C ABI generation (ABI_VERSION in src/lib.rs); the module's
// own version tag, bindings/go/vX.Y.Z, is LibraryVersion.
const (
	// LibraryVersion is the version of libtokenchecker this module was released with; link it
	// with that library (or a later one of the same ABIVersion).
	LibraryVersion = "0.1.0"
	// ABIVersion is the C ABI generation (TOKENCHECKER_ABI_VERSION) this module is written
	// for: New refuses a header or a library of another generation, naming both.
	ABIVersion = 2
)
