//go:build tokenchecker_intree && !tokenchecker_nolink

package tokenchecker

// -tags tokenchecker_intree: the header and the library of the checkout this module sits in
// (bindings/go of a clone, after `cargo build --release -p tokenchecker`); programs built so
// find libtokenchecker.so in target/release at run time without LD_LIBRARY_PATH. The
// repository's own tests use it (scripts/test-all). Outside a checkout these paths do not exist.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -ltokenchecker -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
