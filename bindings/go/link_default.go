//go:build !tokenchecker_pkgconfig && !tokenchecker_static && !tokenchecker_nolink

package tokenchecker

// Default linking: the library built in this repository with
// `cargo build --release -p tokenchecker` (see README.md). Flags from CGO_CFLAGS and
// CGO_LDFLAGS come before these, so they can point at an installed copy instead; build with
// -tags tokenchecker_pkgconfig to use pkg-config, or -tags tokenchecker_nolink to give every
// flag yourself.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -ltokenchecker -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
