//go:build tokenchecker_pkgconfig && !tokenchecker_static

package tokenchecker

// Linking through pkg-config (build with -tags tokenchecker_pkgconfig): needs tokenchecker.pc
// on PKG_CONFIG_PATH, as scripts/install installs it (README.md).

/*
#cgo pkg-config: tokenchecker
*/
import "C"
