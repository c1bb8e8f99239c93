//go:build !tokenchecker_intree && !tokenchecker_static && !tokenchecker_nolink

package tokenchecker

// The default: an installed library found through pkg-config (tokenchecker.pc on
// PKG_CONFIG_PATH: the release tarball's lib/pkgconfig, or scripts/install's; README.md). Links
// the shared library, which the loader must find at run time (ldconfig, LD_LIBRARY_PATH, or
// CGO_LDFLAGS=-Wl,-rpath,<libdir>). -tags tokenchecker_pkgconfig is accepted and means the same.

/*
#cgo pkg-config: tokenchecker
*/
import "C"
