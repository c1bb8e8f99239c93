//go:build !tokenchecker_pkgconfig && !tokenchecker_static && !tokenchecker_nolink

package tokenchecker

// The library built in this repository (README.md); -tags tokenchecker_pkgconfig, _nolink.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -ltokenchecker -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
