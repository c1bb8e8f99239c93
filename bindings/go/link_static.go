//go:build tokenchecker_static

package tokenchecker

// -tags tokenchecker_static: tokenchecker-static.pc on PKG_CONFIG_PATH (scripts/install).

/*
#cgo pkg-config: tokenchecker-static
*/
import "C"
