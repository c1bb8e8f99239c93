//go:build tokenchecker_static

package tokenchecker

// Static linking through pkg-config (build with -tags tokenchecker_static): needs
// tokenchecker-static.pc on PKG_CONFIG_PATH, as scripts/install installs it (README.md).

/*
#cgo pkg-config: tokenchecker-static
*/
import "C"
