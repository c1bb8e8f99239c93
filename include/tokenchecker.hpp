// tokenchecker.hpp: a header-only C++17 wrapper of the tokenchecker C ABI (tokenchecker.h).
//
//     #include <tokenchecker.hpp>
//
//     tokenchecker::Checker checker(config_json);           // throws tokenchecker::Error
//     tokenchecker::Result r = checker.check(token);         // throws on any status but TC_OK
//     use(r.json);                                           // the result document (JSON text)
//
//     tokenchecker::Result r2 = checker.check(token, std::nothrow);   // never throws Error
//     if (!r2) log(r2.status_name(), r2.error_message());
//
// Errors are tokenchecker::Error (a std::runtime_error) carrying the tc_status in code() and the
// library's error document in json(). The "nothrow" overloads return the status and the document
// instead; like every function here they may still throw std::bad_alloc. Strings the library
// returns are released with tc_string_free as soon as they are copied into a std::string.
//
// Checker is move-only and owns one tc_checker (released with tc_free). Its const member functions
// are thread-safe (the library's checkers are); moving, assigning or destroying a Checker while
// another thread uses it is not. A moved-from Checker is empty: its calls fail with
// TC_INVALID_ARGUMENT.
//
// Arguments are NUL-terminated C strings for the library: a std::string or std::string_view with
// an embedded NUL is refused with TC_INVALID_ARGUMENT (never silently truncated into a different
// token).
//
// The *_async functions call their callback exactly once, on one of the library's runtime threads
// (never the calling thread). The callback must be quick, must not throw (an escaping exception
// calls std::terminate), and must not call the blocking functions (they fail there with
// TC_WOULD_BLOCK); it may call the *_async ones.
//
// Also: stats() and metrics() (process-wide counters, JSON and Prometheus text), set_logger() /
// clear_logger() (the library's log messages, to a std::function), status_name(),
// library_version().
//
// Constructing a Checker checks that the library's tc_abi_version() equals the
// TOKENCHECKER_ABI_VERSION of the tokenchecker.h this was compiled with, and throws
// tokenchecker::AbiMismatch otherwise.

#ifndef TOKENCHECKER_HPP
#define TOKENCHECKER_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L))
#error "tokenchecker.hpp needs C++17"
#endif

#include "tokenchecker.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace tokenchecker {

/// The name of a status ("TC_OK", …, "TC_UNKNOWN").
inline const char *status_name(tc_status status) noexcept {
    return tc_status_name(static_cast<std::uint32_t>(status));
}

/// The version of the library loaded at run time ("MAJOR.MINOR.PATCH").
inline std::string library_version() { return tc_version(); }

/// The version of the header this was compiled with.
inline constexpr std::string_view header_version = TOKENCHECKER_VERSION;

namespace detail {

struct string_deleter {
    void operator()(char *s) const noexcept { tc_string_free(s); }
};
/// A string the library returned, released with tc_string_free.
using owned_string = std::unique_ptr<char, string_deleter>;

struct checker_deleter {
    void operator()(tc_checker *c) const noexcept { tc_free(c); }
};

/// Takes ownership of a library string and copies it (NULL → "").
inline std::string take(char *s) {
    owned_string owned(s);
    return owned ? std::string(owned.get()) : std::string();
}

inline void append_utf8(std::string &out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

inline bool hex4(std::string_view s, std::size_t at, std::uint32_t &out) {
    if (at + 4 > s.size())
        return false;
    out = 0;
    for (std::size_t i = at; i < at + 4; i++) {
        char c = s[i];
        out <<= 4;
        if (c >= '0' && c <= '9')
            out |= static_cast<std::uint32_t>(c - '0');
        else if (c >= 'a' && c <= 'f')
            out |= static_cast<std::uint32_t>(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            out |= static_cast<std::uint32_t>(c - 'A' + 10);
        else
            return false;
    }
    return true;
}

/// The decoded value of the first string member `"key": "…"` in a JSON document, if any.
/// Enough for the library's error documents ({"error":{"code":"…","message":"…"}}).
inline std::optional<std::string> json_string_member(std::string_view json, std::string_view key) {
    std::string needle;
    needle.reserve(key.size() + 2);
    needle += '"';
    needle += key;
    needle += '"';
    std::size_t pos = 0;
    while ((pos = json.find(needle, pos)) != std::string_view::npos) {
        std::size_t p = pos + needle.size();
        while (p < json.size() && (json[p] == ' ' || json[p] == '\t' || json[p] == '\n' || json[p] == '\r'))
            p++;
        if (p >= json.size() || json[p] != ':') {
            pos = p;
            continue;
        }
        p++;
        while (p < json.size() && (json[p] == ' ' || json[p] == '\t' || json[p] == '\n' || json[p] == '\r'))
            p++;
        if (p >= json.size() || json[p] != '"')
            return std::nullopt;
        std::string out;
        for (p++; p < json.size(); p++) {
            char c = json[p];
            if (c == '"')
                return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (++p >= json.size())
                break;
            switch (json[p]) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u': {
                std::uint32_t cp = 0;
                if (!hex4(json, p + 1, cp))
                    return std::nullopt;
                p += 4;
                std::uint32_t lo = 0;
                if (cp >= 0xD800 && cp < 0xDC00 && p + 2 < json.size() && json[p + 1] == '\\' &&
                    json[p + 2] == 'u' && hex4(json, p + 3, lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else if (cp >= 0xD800 && cp < 0xE000) {
                    cp = 0xFFFD;
                }
                append_utf8(out, cp);
                break;
            }
            default: out += json[p]; break; // \" \\ \/
            }
        }
        return std::nullopt; // unterminated
    }
    return std::nullopt;
}

/// A string argument for the C ABI: NUL-terminated, with no NUL inside.
class Arg {
  public:
    Arg(const char *s) noexcept : ptr_(s) {}
    Arg(const std::string &s) noexcept : ptr_(s.c_str()), has_nul_(s.find('\0') != std::string::npos) {}
    Arg(std::string_view s) : copy_(s), ptr_(copy_.c_str()), has_nul_(s.find('\0') != std::string_view::npos) {}
    Arg(std::nullptr_t) noexcept : ptr_(nullptr) {}
    Arg(const Arg &) = delete;
    Arg &operator=(const Arg &) = delete;

    const char *get() const noexcept { return ptr_; }
    bool has_nul() const noexcept { return has_nul_; }

  private:
    std::string copy_;
    const char *ptr_;
    bool has_nul_ = false;
};

inline std::string embedded_nul_document() {
    return "{\"error\":{\"code\":\"TC_INVALID_ARGUMENT\",\"message\":\"a string argument contains a NUL byte\"}}";
}

} // namespace detail

/// The outcome of a call: the status, and the library's JSON document (the result on TC_OK,
/// otherwise `{"error": {"code": "TC_…", "message": "…"}}`).
struct Result {
    tc_status status = TC_OK;
    std::string json;

    bool ok() const noexcept { return status == TC_OK; }
    explicit operator bool() const noexcept { return ok(); }
    const char *status_name() const noexcept { return tokenchecker::status_name(status); }
    /// The error document's message ("" on success or when there is none).
    std::string error_message() const {
        if (ok())
            return std::string();
        auto m = detail::json_string_member(json, "message");
        return m ? *m : std::string();
    }
    /// Throws tokenchecker::Error unless ok(); returns *this otherwise.
    const Result &throw_if_error() const &;
    Result &&throw_if_error() &&;
};

/// A failed call: code() is the tc_status, json() the library's error document.
class Error : public std::runtime_error {
  public:
    Error(tc_status code, const std::string &message, std::string json = std::string())
        : std::runtime_error(std::string(tokenchecker::status_name(code)) + ": " + message), code_(code),
          message_(message), json_(std::move(json)) {}

    /// From a failed Result: the message is taken from its error document.
    explicit Error(const Result &r) : Error(r.status, r.error_message(), r.json) {}

    tc_status code() const noexcept { return code_; }
    const char *code_name() const noexcept { return tokenchecker::status_name(code_); }
    /// The message alone (what() is "TC_CODE: message").
    const std::string &message() const noexcept { return message_; }
    /// The library's error document (may be empty for errors raised by this header).
    const std::string &json() const noexcept { return json_; }

  private:
    tc_status code_;
    std::string message_;
    std::string json_;
};

/// The library was built for another C ABI generation than the header in use (code()
/// TC_INVALID_ARGUMENT): rebuild the program against the header installed with the library.
class AbiMismatch : public Error {
  public:
    AbiMismatch(std::uint32_t header_abi, std::uint32_t library_abi)
        : Error(TC_INVALID_ARGUMENT,
                "tokenchecker ABI mismatch: this program was compiled with tokenchecker.h for ABI " +
                    std::to_string(header_abi) + " (version " TOKENCHECKER_VERSION ") but the loaded library " +
                    std::string(tc_version()) + " has ABI " + std::to_string(library_abi) +
                    "; rebuild against the library's own header"),
          header_abi_(header_abi), library_abi_(library_abi) {}
    std::uint32_t header_abi() const noexcept { return header_abi_; }
    std::uint32_t library_abi() const noexcept { return library_abi_; }

  private:
    std::uint32_t header_abi_;
    std::uint32_t library_abi_;
};

inline const Result &Result::throw_if_error() const & {
    if (!ok())
        throw Error(*this);
    return *this;
}

inline Result &&Result::throw_if_error() && {
    if (!ok())
        throw Error(*this);
    return std::move(*this);
}

/// Throws AbiMismatch unless the loaded library speaks the header's ABI.
inline void check_abi() {
    const std::uint32_t lib = tc_abi_version();
    if (lib != TOKENCHECKER_ABI_VERSION)
        throw AbiMismatch(TOKENCHECKER_ABI_VERSION, lib);
}

/// Process-wide counters (tc_stats); throws Error on failure.
inline Result stats() {
    char *json = nullptr;
    tc_status st = tc_stats(&json);
    return Result{st, detail::take(json)}.throw_if_error();
}

/// Process-wide counters and latency histograms in the Prometheus text format (tc_metrics);
/// throws Error on failure.
inline std::string metrics() {
    char *text = nullptr;
    tc_status st = tc_metrics(&text);
    std::string out = detail::take(text);
    if (st != TC_OK)
        throw Error(Result{st, std::move(out)});
    return out;
}

/// A log sink: the level and the message (valid during the call only; copy it to keep it).
using Logger = std::function<void(tc_log_level, std::string_view)>;

namespace detail {
inline std::mutex &logger_mutex() {
    static std::mutex m;
    return m;
}
// The installed sink. Never destroyed at exit (library threads may still log then); reachable
// from this static, so leak checkers don't report it.
inline Logger *&logger_slot() {
    static Logger *current = nullptr;
    return current;
}
inline void log_trampoline(void *user_data, tc_log_level level, const char *message) noexcept {
    (*static_cast<Logger *>(user_data))(level, message != nullptr ? std::string_view(message) : std::string_view());
}
} // namespace detail

/// Sends the library's log messages at `level` and more severe to `logger` (tc_set_logger),
/// replacing the previous one; an empty `logger` removes it. The logger may be called from any
/// thread (the library's runtime threads included), must be quick, must not throw (an escaping
/// exception calls std::terminate) and must not call set_logger. Messages never hold a token or
/// a secret. When this returns, the previous logger is no longer running and has been destroyed.
/// Throws Error (TC_INVALID_ARGUMENT for an unknown level).
inline void set_logger(Logger logger, tc_log_level level = TC_LOG_INFO) {
    std::lock_guard<std::mutex> lock(detail::logger_mutex());
    std::unique_ptr<Logger> next = logger ? std::make_unique<Logger>(std::move(logger)) : nullptr;
    tc_status st = next ? tc_set_logger(&detail::log_trampoline, next.get(), static_cast<std::uint32_t>(level))
                        : tc_set_logger(nullptr, nullptr, static_cast<std::uint32_t>(TC_LOG_OFF));
    if (st != TC_OK)
        throw Error(st, "tc_set_logger failed");
    // tc_set_logger waits for calls in progress: the old sink is unused from here on.
    std::unique_ptr<Logger> previous(detail::logger_slot());
    detail::logger_slot() = next.release();
}

/// Removes the logger installed with set_logger.
inline void clear_logger() { set_logger(Logger(), TC_LOG_OFF); }

/// The callback of the *_async functions: runs on a library thread, must not throw.
using Callback = std::function<void(Result)>;

/// A token checker (one tc_checker). Move-only.
class Checker {
  public:
    /// Creates a checker from a JSON configuration (see the README). Throws AbiMismatch when the
    /// library's ABI differs from the header's, Error (TC_INVALID_CONFIG,
    /// TC_CREDENTIALS_REJECTED, …) when tc_new fails.
    explicit Checker(detail::Arg config_json) {
        check_abi();
        if (config_json.has_nul())
            throw Error(TC_INVALID_ARGUMENT, "the configuration contains a NUL byte",
                        detail::embedded_nul_document());
        tc_checker *raw = nullptr;
        char *err = nullptr;
        tc_status st = tc_new(config_json.get(), &raw, &err);
        handle_.reset(raw); // owned before anything else can throw
        std::string doc = detail::take(err);
        if (st != TC_OK) {
            handle_.reset();
            throw Error(Result{st, std::move(doc)});
        }
    }

    /// Takes ownership of a checker made with tc_new (NULL makes an empty Checker).
    static Checker adopt(tc_checker *raw) noexcept { return Checker(raw, adopt_tag{}); }

    Checker(Checker &&) noexcept = default;
    Checker &operator=(Checker &&) noexcept = default;
    Checker(const Checker &) = delete;
    Checker &operator=(const Checker &) = delete;
    ~Checker() = default;

    /// False for a moved-from (or released) Checker.
    bool valid() const noexcept { return handle_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }
    /// The underlying handle, still owned by this object.
    tc_checker *native_handle() const noexcept { return handle_.get(); }
    /// Gives up ownership: the caller must tc_free the handle.
    tc_checker *release() noexcept { return handle_.release(); }

    // ---- check -----------------------------------------------------------------------------

    /// Checks a token (tc_check). Blocks on a cache miss. Throws Error unless TC_OK.
    Result check(detail::Arg token) const { return check(token, std::nothrow).throw_if_error(); }

    /// The same, returning the status instead of throwing Error.
    Result check(const detail::Arg &token, const std::nothrow_t &) const {
        if (token.has_nul())
            return nul_result();
        char *json = nullptr;
        tc_status st = tc_check(handle_.get(), token.get(), &json);
        return Result{st, detail::take(json)};
    }

    /// Answers from the in-process cache only (tc_try_check): std::nullopt when that would need
    /// the network (TC_WOULD_BLOCK); throws Error for any other failure.
    std::optional<Result> try_check(detail::Arg token) const {
        Result r = try_check(token, std::nothrow);
        if (r.status == TC_WOULD_BLOCK)
            return std::nullopt;
        return std::move(r).throw_if_error();
    }

    /// The same, returning every status (TC_WOULD_BLOCK included) instead of throwing Error.
    Result try_check(const detail::Arg &token, const std::nothrow_t &) const {
        if (token.has_nul())
            return nul_result();
        char *json = nullptr;
        tc_status st = tc_try_check(handle_.get(), token.get(), &json);
        return Result{st, detail::take(json)};
    }

    // ---- authorize -------------------------------------------------------------------------

    /// Checks the token, then the allowed principals (tc_authorize). `request_json`:
    /// {"allowed_principals": [...], "allow_public": false, "allow_all_authenticated_users": false}.
    /// Throws Error unless TC_OK (TC_NOT_AUTHORIZED when no principal matched).
    Result authorize(detail::Arg token, detail::Arg request_json) const {
        return authorize(token, request_json, std::nothrow).throw_if_error();
    }

    Result authorize(const detail::Arg &token, const detail::Arg &request_json, const std::nothrow_t &) const {
        if (token.has_nul() || request_json.has_nul())
            return nul_result();
        char *json = nullptr;
        tc_status st = tc_authorize(handle_.get(), token.get(), request_json.get(), &json);
        return Result{st, detail::take(json)};
    }

    // ---- dependent tokens --------------------------------------------------------------------

    /// A dependent token for `scope` (tc_dependent_token). The document holds a secret.
    /// Throws Error unless TC_OK (TC_NOT_AUTHORIZED when the grant has none for that scope).
    Result dependent_token(detail::Arg token, detail::Arg scope) const {
        return dependent_token(token, scope, std::nothrow).throw_if_error();
    }

    Result dependent_token(const detail::Arg &token, const detail::Arg &scope, const std::nothrow_t &) const {
        if (token.has_nul() || scope.has_nul())
            return nul_result();
        char *json = nullptr;
        tc_status st = tc_dependent_token(handle_.get(), token.get(), scope.get(), &json);
        return Result{st, detail::take(json)};
    }

    // ---- purge -----------------------------------------------------------------------------

    /// Forgets everything cached for a token (tc_purge). Throws Error on failure.
    void purge(detail::Arg token) const {
        if (token.has_nul())
            throw nul_error();
        tc_status st = purge(token, std::nothrow);
        if (st != TC_OK)
            throw Error(st, "tc_purge failed");
    }

    tc_status purge(const detail::Arg &token, const std::nothrow_t &) const noexcept {
        if (token.has_nul())
            return TC_INVALID_ARGUMENT;
        return tc_purge(handle_.get(), token.get());
    }

    /// Forgets every cached token of an identity (tc_purge_identity). Throws Error on failure.
    void purge_identity(detail::Arg identity) const {
        if (identity.has_nul())
            throw nul_error();
        tc_status st = purge_identity(identity, std::nothrow);
        if (st != TC_OK)
            throw Error(st, "tc_purge_identity failed");
    }

    tc_status purge_identity(const detail::Arg &identity, const std::nothrow_t &) const noexcept {
        if (identity.has_nul())
            return TC_INVALID_ARGUMENT;
        return tc_purge_identity(handle_.get(), identity.get());
    }

    // ---- async -----------------------------------------------------------------------------

    /// Starts a check (tc_check_async); `callback` gets the Result exactly once, on a library
    /// thread. Throws Error (and never calls the callback) when the check could not be started.
    void check_async(detail::Arg token, Callback callback) const {
        if (token.has_nul())
            throw nul_error();
        start(check_async(token, std::move(callback), std::nothrow));
    }

    /// The same, returning the status (anything but TC_OK: not started, no callback).
    tc_status check_async(const detail::Arg &token, Callback callback, const std::nothrow_t &) const {
        if (token.has_nul() || !callback)
            return TC_INVALID_ARGUMENT;
        auto box = std::make_unique<Callback>(std::move(callback));
        tc_status st = tc_check_async(handle_.get(), token.get(), &Checker::trampoline, box.get());
        if (st == TC_OK)
            box.release(); // the trampoline owns it now
        return st;
    }

    /// tc_authorize_async; see check_async.
    void authorize_async(detail::Arg token, detail::Arg request_json, Callback callback) const {
        if (token.has_nul() || request_json.has_nul())
            throw nul_error();
        start(authorize_async(token, request_json, std::move(callback), std::nothrow));
    }

    tc_status authorize_async(const detail::Arg &token, const detail::Arg &request_json, Callback callback,
                              const std::nothrow_t &) const {
        if (token.has_nul() || request_json.has_nul() || !callback)
            return TC_INVALID_ARGUMENT;
        auto box = std::make_unique<Callback>(std::move(callback));
        tc_status st = tc_authorize_async(handle_.get(), token.get(), request_json.get(), &Checker::trampoline,
                                          box.get());
        if (st == TC_OK)
            box.release();
        return st;
    }

    /// tc_dependent_token_async; see check_async.
    void dependent_token_async(detail::Arg token, detail::Arg scope, Callback callback) const {
        if (token.has_nul() || scope.has_nul())
            throw nul_error();
        start(dependent_token_async(token, scope, std::move(callback), std::nothrow));
    }

    tc_status dependent_token_async(const detail::Arg &token, const detail::Arg &scope, Callback callback,
                                    const std::nothrow_t &) const {
        if (token.has_nul() || scope.has_nul() || !callback)
            return TC_INVALID_ARGUMENT;
        auto box = std::make_unique<Callback>(std::move(callback));
        tc_status st = tc_dependent_token_async(handle_.get(), token.get(), scope.get(), &Checker::trampoline,
                                                box.get());
        if (st == TC_OK)
            box.release();
        return st;
    }

  private:
    struct adopt_tag {};
    Checker(tc_checker *raw, adopt_tag) noexcept : handle_(raw) {}

    static Result nul_result() { return Result{TC_INVALID_ARGUMENT, detail::embedded_nul_document()}; }
    static Error nul_error() { return Error(nul_result()); }

    static void start(tc_status st) {
        if (st != TC_OK)
            throw Error(st, "the asynchronous call was not started");
    }

    // Runs on a library thread. noexcept: an exception escaping the callback (or std::bad_alloc
    // here) ends in std::terminate instead of unwinding into the library.
    static void trampoline(void *user_data, tc_status status, char *json) noexcept {
        std::unique_ptr<Callback> callback(static_cast<Callback *>(user_data));
        detail::owned_string owned(json);
        Result r{status, owned ? std::string(owned.get()) : std::string()};
        owned.reset();
        (*callback)(std::move(r));
    }

    std::unique_ptr<tc_checker, detail::checker_deleter> handle_;
};

} // namespace tokenchecker

#endif // TOKENCHECKER_HPP
