package tokenchecker

// The library's log messages, delivered to a Go function (SetLogger) by tcgoLog.

/*
#include "tcgo.h"
*/
import "C"

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// LogLevel is a library log message's severity (tc_log_level); a logger gets more severe too.
type LogLevel uint32

// The levels of tc_log_level (the header's values).
const (
	LogOff   LogLevel = C.TC_LOG_OFF // no messages
	LogError LogLevel = C.TC_LOG_ERROR
	LogWarn  LogLevel = C.TC_LOG_WARN
	LogInfo  LogLevel = C.TC_LOG_INFO
	LogDebug LogLevel = C.TC_LOG_DEBUG
)

var logLevelNames = [...]string{"off", "error", "warn", "info", "debug"}

// String is "off", "error", "warn", "info" or "debug".
func (l LogLevel) String() string {
	if l <= LogDebug {
		return logLevelNames[l]
	}
	return "LogLevel(" + strconv.FormatUint(uint64(l), 10) + ")"
}

var (
	loggerMu sync.Mutex                             // serialises SetLogger
	logger   atomic.Pointer[func(LogLevel, string)] // what tcgoLog calls
)

// SetLogger sends the library's log messages at level and more severe to f, for the whole
// process (the library has one logger), replacing the previous one, which is not called again
// once SetLogger returns; SetLogger(LogOff, nil) (or a nil f) removes it. f is called from the
// library's threads and from goroutines calling the checker, possibly concurrently: it must be
// safe for concurrent use, quick, and must not call SetLogger (deadlock); its panics are
// recovered. Messages never contain a token or a secret. Independently, TOKENCHECKER_LOG
// (error, warn, info, debug; read at first use) sends the messages to standard error.
func SetLogger(level LogLevel, f func(level LogLevel, message string)) error {
	if level > LogDebug {
		return &Error{Code: StatusInvalidArgument,
			Message: "unknown log level " + strconv.FormatUint(uint64(level), 10) + "; use LogOff … LogDebug"}
	}
	var next *func(LogLevel, string)
	if f != nil && level != LogOff {
		next = &f
	} else {
		level = LogOff
	}
	loggerMu.Lock()
	defer loggerMu.Unlock()
	// tc_set_logger returns once the previous callback has finished: none calls it afterwards.
	previous := logger.Swap(next)
	if status := Status(C.tcgo_set_logger(C.uint32_t(level))); status != StatusOK {
		logger.Store(previous)
		return &Error{Code: status, Message: "tc_set_logger failed"}
	}
	return nil
}

// tcgoLog hands a copy of a log message to SetLogger's f (a panic must not kill the thread).
//
//export tcgoLog
func tcgoLog(level C.tc_log_level, message *C.char) {
	if f := logger.Load(); f != nil {
		msg := C.GoString(message)
		defer func() { _ = recover() }()
		(*f)(LogLevel(level), msg)
	}
}
