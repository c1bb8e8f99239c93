package tokenchecker

/*
#include "tokenchecker.h"
*/
import "C"

// tcgoLog is the library's log callback (through tcgo_log_trampoline in logger.go): it copies
// the message and hands it to the function of SetLogger.
//
//export tcgoLog
func tcgoLog(level C.tc_log_level, message *C.char) {
	f := logger.Load()
	if f == nil {
		return
	}
	msg := C.GoString(message)
	defer func() { _ = recover() }() // a logger's panic must not kill a library thread
	(*f)(LogLevel(level), msg)
}
