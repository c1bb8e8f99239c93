//go:build tokenchecker_pkgconfig && !tokenchecker_static

package tokenchecker

// -tags tokenchecker_pkgconfig: tokenchecker.pc on PKG_CONFIG_PATH (scripts/install, README.md).

/*
#cgo pkg-config: tokenchecker
*/
import "C"
