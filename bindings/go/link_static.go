//go:build tokenchecker_static && !tokenchecker_intree && !tokenchecker_nolink

package tokenchecker

// -tags tokenchecker_static: tokenchecker-static.pc on PKG_CONFIG_PATH (the release tarball's
// lib/pkgconfig, or scripts/install's): libtokenchecker.a linked into the program, which then
// needs no libtokenchecker.so at run time.

/*
#cgo pkg-config: tokenchecker-static
*/
import "C"
