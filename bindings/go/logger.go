package tokenchecker

// The library's log messages, delivered to a Go function (SetLogger). The exported Go function
// the library calls is in logger_export.go (a file with //export may hold only declarations in
// its preamble).

/*
#include <stdint.h>
#include <stddef.h>
#include "tokenchecker.h"

extern void tcgoLog(tc_log_level level, char *message);

static void tcgo_log_trampoline(void *user_data, tc_log_level level, const char *message) {
	(void)user_data;
	tcgoLog(level, (char *)message);
}

static tc_status tcgo_set_logger(uint32_t level) {
	if (level == TC_LOG_OFF) {
		return tc_set_logger(NULL, NULL, TC_LOG_OFF);
	}
	return tc_set_logger(tcgo_log_trampoline, NULL, level);
}
*/
import "C"

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// LogLevel is the severity of a library log message (tc_log_level); a logger receives its
// level and every more severe one.
type LogLevel uint32

// The levels of tc_log_level.
const (
	LogOff   LogLevel = 0 // TC_LOG_OFF: no messages
	LogError LogLevel = 1 // TC_LOG_ERROR
	LogWarn  LogLevel = 2 // TC_LOG_WARN
	LogInfo  LogLevel = 3 // TC_LOG_INFO
	LogDebug LogLevel = 4 // TC_LOG_DEBUG
)

// String is "off", "error", "warn", "info" or "debug".
func (l LogLevel) String() string {
	switch l {
	case LogOff:
		return "off"
	case LogError:
		return "error"
	case LogWarn:
		return "warn"
	case LogInfo:
		return "info"
	case LogDebug:
		return "debug"
	}
	return "LogLevel(" + strconv.FormatUint(uint64(l), 10) + ")"
}

var (
	loggerMu sync.Mutex                             // serialises SetLogger
	logger   atomic.Pointer[func(LogLevel, string)] // what tcgoLog calls
)

// SetLogger sends the library's log messages at level and more severe to f, for the whole
// process (the library has one logger), replacing the previous one; SetLogger(LogOff, nil)
// (or a nil f) removes it. Once SetLogger returns, the previous function is not called again.
//
// f is called from the library's threads (and from goroutines calling the checker), possibly
// concurrently: it must be safe for concurrent use, must not block for long, and must not call
// SetLogger (that would deadlock). A panic in f is recovered and the message dropped. Messages
// never contain a token or a secret. For example, with log/slog:
//
//	tokenchecker.SetLogger(tokenchecker.LogInfo, func(l tokenchecker.LogLevel, msg string) {
//		slog.Info(msg, "component", "tokenchecker", "level", l)
//	})
//
// Independently of SetLogger, the environment variable TOKENCHECKER_LOG (error, warn, info,
// debug), read by the library at first use, sends its messages to standard error.
func SetLogger(level LogLevel, f func(level LogLevel, message string)) error {
	if level > LogDebug {
		return &Error{Code: StatusInvalidArgument,
			Message: "unknown log level " + strconv.FormatUint(uint64(level), 10) + "; use LogOff … LogDebug"}
	}
	loggerMu.Lock()
	defer loggerMu.Unlock()
	if f == nil || level == LogOff {
		status := Status(C.tcgo_set_logger(C.uint32_t(LogOff)))
		logger.Store(nil) // the library no longer calls tcgoLog
		return statusError(status)
	}
	previous := logger.Swap(&f)
	if status := Status(C.tcgo_set_logger(C.uint32_t(level))); status != StatusOK {
		logger.Store(previous)
		return statusError(status)
	}
	return nil
}

func statusError(status Status) error {
	if status == StatusOK {
		return nil
	}
	return &Error{Code: status, Message: "tc_set_logger failed"}
}
