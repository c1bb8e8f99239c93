// Tests of the C++17 wrapper include/tokenchecker.hpp against the fake Globus Auth.
//
// Built by tests/ecosystem/run.sh with CMake against an installed copy (find_package) with
// -Wall -Wextra -Werror -fsanitize=address,undefined, and run with FAKE_GLOBUS_URL set to a
// running target/release/fake-globus. Prints "ok"/"not ok" per test and a final
// "N passed, M failed" line; exits 1 on any failure.

#include <tokenchecker.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace tc = tokenchecker;

// ---- compile-time properties ---------------------------------------------------------------------

static_assert(!std::is_copy_constructible_v<tc::Checker>, "Checker is move-only");
static_assert(!std::is_copy_assignable_v<tc::Checker>, "Checker is move-only");
static_assert(std::is_nothrow_move_constructible_v<tc::Checker>, "Checker moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<tc::Checker>, "Checker moves without throwing");
static_assert(std::is_base_of_v<std::runtime_error, tc::Error>, "Error is a std::runtime_error");
static_assert(std::is_base_of_v<tc::Error, tc::AbiMismatch>, "AbiMismatch is an Error");
static_assert(sizeof(tc::Checker) == sizeof(void *), "Checker is one pointer");

// ---- a tiny harness --------------------------------------------------------------------------------

namespace {

int g_failures_in_test = 0;

#define CHECK(cond)                                                                                       \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            std::cout << "#   " << __FILE__ << ":" << __LINE__ << ": CHECK(" #cond ") failed" << std::endl; \
            g_failures_in_test++;                                                                         \
        }                                                                                                 \
    } while (0)

#define CHECK_EQ(a, b)                                                                                    \
    do {                                                                                                  \
        auto va_ = (a);                                                                                   \
        auto vb_ = (b);                                                                                   \
        if (!(va_ == vb_)) {                                                                              \
            std::cout << "#   " << __FILE__ << ":" << __LINE__ << ": " #a " == " #b " failed: " << va_    \
                      << " != " << vb_ << std::endl;                                                      \
            g_failures_in_test++;                                                                         \
        }                                                                                                 \
    } while (0)

// Runs `body`, expecting a tokenchecker::Error with `code`; returns it.
template <typename F> std::optional<tc::Error> expect_error(tc_status code, F &&body, int line) {
    try {
        body();
    } catch (const tc::Error &e) {
        if (e.code() != code) {
            std::cout << "#   line " << line << ": expected " << tc::status_name(code) << ", got " << e.what()
                      << std::endl;
            g_failures_in_test++;
        }
        return e;
    } catch (const std::exception &e) {
        std::cout << "#   line " << line << ": expected tokenchecker::Error, got " << e.what() << std::endl;
        g_failures_in_test++;
        return std::nullopt;
    }
    std::cout << "#   line " << line << ": expected " << tc::status_name(code) << ", nothing was thrown"
              << std::endl;
    g_failures_in_test++;
    return std::nullopt;
}
#define EXPECT_ERROR(code, ...) expect_error(code, [&] { __VA_ARGS__; }, __LINE__)

bool has(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

std::ostream &operator<<(std::ostream &os, tc_status s) { return os << tc::status_name(s); }

std::string g_url;

std::string config(const std::string &extra = std::string()) {
    return "{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\","
           "\"expected_scopes\":[\"urn:globus:auth:scope:test:all\"],"
           "\"auth_url\":\"" +
           g_url + "\",\"groups_url\":\"" + g_url + "\"" + extra + "}";
}

const char *const ALICE = "urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000001";
const char *const BOB = "urn:globus:auth:identity:b0b00000-0000-4000-8000-000000000003";
const char *const GROUP_MEMBER = "urn:globus:groups:id:11111111-1111-4111-8111-111111111111";
const char *const GROUP_PENDING = "urn:globus:groups:id:33333333-3333-4333-8333-333333333333";
const char *const TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all";

// Waits for an async Result.
tc::Result wait(std::future<tc::Result> &f) {
    if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
        std::cout << "#   async result did not arrive within 20 s" << std::endl;
        g_failures_in_test++;
        return tc::Result{TC_PANIC, ""};
    }
    return f.get();
}

// ---- tests -----------------------------------------------------------------------------------------

void test_versions() {
    CHECK_EQ(tc::library_version(), std::string(tc::header_version));
    CHECK_EQ(tc_abi_version(), static_cast<std::uint32_t>(TOKENCHECKER_ABI_VERSION));
    tc::check_abi(); // does not throw
    CHECK_EQ(std::string(tc::status_name(TC_INACTIVE_TOKEN)), std::string("TC_INACTIVE_TOKEN"));
    CHECK_EQ(std::string(tc::status_name(static_cast<tc_status>(999))), std::string("TC_UNKNOWN"));
}

void test_invalid_config() {
    auto e = EXPECT_ERROR(TC_INVALID_CONFIG, tc::Checker c(config(",\"bogus_key\":1")));
    if (e) {
        CHECK(has(e->message(), "bogus_key"));
        CHECK(has(e->what(), "TC_INVALID_CONFIG: "));
        CHECK(has(e->json(), "\"TC_INVALID_CONFIG\""));
        CHECK_EQ(std::string(e->code_name()), std::string("TC_INVALID_CONFIG"));
    }
    EXPECT_ERROR(TC_INVALID_CONFIG, tc::Checker c("not json"));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, tc::Checker c(nullptr));
    // A NUL inside the document is refused, not truncated.
    std::string with_nul = config();
    with_nul.insert(with_nul.size() - 1, std::string(",\0\"x\":1", 7));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, tc::Checker c(with_nul));
    // Wrong credentials: the creation introspects a dummy token.
    std::string bad = config();
    bad.replace(bad.find("test-secret"), 11, "nope");
    EXPECT_ERROR(TC_CREDENTIALS_REJECTED, tc::Checker c(bad));
}

void test_valid() {
    tc::Checker checker(config());
    CHECK(checker.valid());
    CHECK(static_cast<bool>(checker));
    checker.purge("tok-valid");
    tc::Result r = checker.check("tok-valid");
    CHECK(r.ok());
    CHECK(static_cast<bool>(r));
    CHECK_EQ(r.status, TC_OK);
    CHECK(has(r.json, "\"active\":true"));
    CHECK(has(r.json, std::string("\"effective_identity\":\"") + ALICE + "\""));
    CHECK(has(r.json, "\"source\":\"network\""));
    CHECK_EQ(r.error_message(), std::string());
    // std::string and std::string_view arguments.
    std::string token = "tok-valid";
    tc::Result again = checker.check(token);
    CHECK(has(again.json, "\"source\":\"memory\""));
    CHECK(checker.check(std::string_view("tok-valid-and-more").substr(0, 9)).ok());
}

void test_inactive_throws() {
    tc::Checker checker(config());
    auto e = EXPECT_ERROR(TC_INACTIVE_TOKEN, (void)checker.check("tok-inactive"));
    if (e) {
        CHECK(has(e->what(), "TC_INACTIVE_TOKEN: "));
        CHECK(!e->message().empty());
        CHECK(has(e->json(), "\"code\":\"TC_INACTIVE_TOKEN\""));
        CHECK(!has(e->what(), "tok-inactive")); // never the token
        const std::runtime_error &base = *e;
        CHECK(has(base.what(), "TC_INACTIVE_TOKEN"));
    }
    EXPECT_ERROR(TC_INSUFFICIENT_SCOPE, (void)checker.check("tok-wrong-scope"));
    EXPECT_ERROR(TC_WRONG_AUDIENCE, (void)checker.check("tok-wrong-aud"));
    EXPECT_ERROR(TC_TOKEN_EXPIRED, (void)checker.check("tok-expired"));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.check(""));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.check(nullptr));
}

void test_nothrow() {
    tc::Checker checker(config());
    tc::Result r = checker.check("tok-inactive", std::nothrow);
    CHECK_EQ(r.status, TC_INACTIVE_TOKEN);
    CHECK(!r);
    CHECK(!r.ok());
    CHECK_EQ(std::string(r.status_name()), std::string("TC_INACTIVE_TOKEN"));
    CHECK(!r.error_message().empty());
    CHECK(has(r.json, "\"error\""));
    auto e = EXPECT_ERROR(TC_INACTIVE_TOKEN, r.throw_if_error());
    if (e)
        CHECK_EQ(e->message(), r.error_message());
    CHECK_EQ(checker.check("tok-wrong-scope", std::nothrow).status, TC_INSUFFICIENT_SCOPE);
    CHECK(checker.check("tok-valid", std::nothrow).ok());
    // A NUL inside a token is refused before the library sees a truncated "tok-valid".
    std::string nul_token("tok-valid\0garbage", 17);
    tc::Result n = checker.check(nul_token, std::nothrow);
    CHECK_EQ(n.status, TC_INVALID_ARGUMENT);
    CHECK(has(n.error_message(), "NUL"));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.check(nul_token));
    CHECK_EQ(checker.purge(nul_token, std::nothrow), TC_INVALID_ARGUMENT);
}

void test_move() {
    tc::Checker a(config());
    tc_checker *raw = a.native_handle();
    CHECK(raw != nullptr);
    tc::Checker b(std::move(a));
    CHECK(!a.valid()); // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    CHECK(a.native_handle() == nullptr);
    CHECK(b.native_handle() == raw);
    CHECK(b.check("tok-valid").ok());
    // A moved-from checker fails cleanly.
    CHECK_EQ(a.check("tok-valid", std::nothrow).status, TC_INVALID_ARGUMENT);
    EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)a.check("tok-valid"));
    // Move assignment releases the target's own checker (LeakSanitizer would see a leak).
    tc::Checker c(config());
    c = std::move(b);
    CHECK(c.native_handle() == raw);
    CHECK(c.check("tok-valid").ok());
    a = std::move(c); // back into the moved-from one
    CHECK(a.check("tok-valid").ok());
    // In containers.
    std::vector<tc::Checker> many;
    for (int i = 0; i < 5; i++)
        many.emplace_back(config());
    many.push_back(std::move(a));
    for (const auto &ch : many)
        CHECK(ch.check("tok-valid").ok());
    // release / adopt.
    tc_checker *owned = many.back().release();
    CHECK(!many.back().valid());
    tc::Checker adopted = tc::Checker::adopt(owned);
    CHECK(adopted.check("tok-valid").ok());
    tc::Checker empty = tc::Checker::adopt(nullptr);
    CHECK(!empty);
}

void test_authorize() {
    tc::Checker checker(config());
    std::string alice_req = std::string("{\"allowed_principals\":[\"") + ALICE + "\"]}";
    tc::Result r = checker.authorize("tok-valid", alice_req);
    CHECK(has(r.json, "\"authorization\""));
    CHECK(has(r.json, std::string("\"matched\":\"") + ALICE + "\""));
    std::string bob_req = std::string("{\"allowed_principals\":[\"") + BOB + "\"]}";
    EXPECT_ERROR(TC_NOT_AUTHORIZED, (void)checker.authorize("tok-valid", bob_req));
    CHECK_EQ(checker.authorize("tok-valid", bob_req, std::nothrow).status, TC_NOT_AUTHORIZED);
    CHECK_EQ(checker.authorize("tok-inactive", alice_req, std::nothrow).status, TC_INACTIVE_TOKEN);
    // Through a group (fetched on demand); a pending membership does not count.
    tc::Result g = checker.authorize("tok-valid", std::string("{\"allowed_principals\":[\"") + GROUP_MEMBER + "\"]}");
    CHECK(has(g.json, std::string("\"matched\":\"") + GROUP_MEMBER + "\""));
    CHECK_EQ(checker
                 .authorize("tok-valid", std::string("{\"allowed_principals\":[\"") + GROUP_PENDING + "\"]}",
                            std::nothrow)
                 .status,
             TC_NOT_AUTHORIZED);
    // all_authenticated_users counts only with its flag.
    CHECK_EQ(checker.authorize("tok-bob", "{\"allowed_principals\":[\"all_authenticated_users\"]}", std::nothrow)
                 .status,
             TC_NOT_AUTHORIZED);
    CHECK(checker
              .authorize("tok-bob",
                         "{\"allowed_principals\":[\"all_authenticated_users\"],"
                         "\"allow_all_authenticated_users\":true}")
              .ok());
    EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.authorize("tok-valid", "{not json"));
}

void test_dependent_token() {
    tc::Checker checker(config());
    tc::Result r = checker.dependent_token("tok-valid", TRANSFER_SCOPE);
    CHECK(has(r.json, "\"access_token\":\""));
    CHECK(has(r.json, "\"resource_server\":\"transfer.api.globus.org\""));
    // By resource server name too.
    CHECK(checker.dependent_token("tok-valid", "transfer.api.globus.org").ok());
    EXPECT_ERROR(TC_NOT_AUTHORIZED, (void)checker.dependent_token("tok-valid", "urn:nope:scope"));
    CHECK_EQ(checker.dependent_token("tok-inactive", TRANSFER_SCOPE, std::nothrow).status, TC_INACTIVE_TOKEN);
}

void test_purge_and_try_check() {
    tc::Checker checker(config());
    CHECK(checker.check("tok-bob").ok());
    std::optional<tc::Result> hit = checker.try_check("tok-bob");
    CHECK(hit.has_value());
    if (hit) {
        CHECK(hit->ok());
        CHECK(has(hit->json, "\"source\":\"memory\""));
    }
    checker.purge("tok-bob");
    CHECK(!checker.try_check("tok-bob").has_value());
    CHECK_EQ(checker.try_check("tok-bob", std::nothrow).status, TC_WOULD_BLOCK);
    tc::Result fresh = checker.check("tok-bob");
    CHECK(has(fresh.json, "\"source\":\"network\""));
    // A cached negative answer is still an error from try_check (not "would block").
    (void)checker.check("tok-inactive", std::nothrow);
    EXPECT_ERROR(TC_INACTIVE_TOKEN, (void)checker.try_check("tok-inactive"));
    // purge_identity, by id and by principal.
    checker.purge_identity("b0b00000-0000-4000-8000-000000000003");
    CHECK(!checker.try_check("tok-bob").has_value());
    CHECK(checker.check("tok-bob").ok());
    checker.purge_identity(BOB);
    CHECK(!checker.try_check("tok-bob").has_value());
    EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.purge(""));
    // stats
    tc::Result s = tc::stats();
    CHECK(has(s.json, "\"checks\""));
}

// Every method refuses a token, request, scope or identity holding a NUL byte with
// TC_INVALID_ARGUMENT (an Error, or the nothrow overload's status), before the library, which
// would see the string cut at the NUL. The part before each NUL is valid and cached, so a
// truncated call would succeed, and a truncated purge would drop tok-valid.
void test_embedded_nul() {
    tc::Checker checker(config());
    CHECK(checker.check("tok-valid").ok());
    CHECK(checker.dependent_token("tok-valid", TRANSFER_SCOPE).ok());
    const std::string token("tok-valid\0junk", 14);
    const std::string_view token_view(token);
    const std::string request = std::string("{\"allowed_principals\":[\"public\"],\"allow_public\":true}") +
                                std::string("\0junk", 5);
    const std::string scope = TRANSFER_SCOPE + std::string("\0", 1);
    const std::string alice = ALICE + std::string("\0", 1);
    const std::string plain_request = "{\"allowed_principals\":[\"public\"],\"allow_public\":true}";
    CHECK(checker.authorize("tok-valid", plain_request).ok()); // what a truncated request would be

    auto refused = [](const tc::Result &r, int line) {
        if (r.status != TC_INVALID_ARGUMENT || !has(r.error_message(), "NUL")) {
            std::cout << "#   line " << line << ": " << r.status_name() << " " << r.json << std::endl;
            g_failures_in_test++;
        }
    };
    refused(checker.check(token, std::nothrow), __LINE__);
    refused(checker.check(token_view, std::nothrow), __LINE__);
    refused(checker.try_check(token, std::nothrow), __LINE__);
    refused(checker.try_check(token_view, std::nothrow), __LINE__);
    refused(checker.authorize(token, plain_request, std::nothrow), __LINE__);
    refused(checker.authorize("tok-valid", request, std::nothrow), __LINE__);
    refused(checker.authorize("tok-valid", std::string_view(request), std::nothrow), __LINE__);
    refused(checker.dependent_token(token, TRANSFER_SCOPE, std::nothrow), __LINE__);
    refused(checker.dependent_token("tok-valid", scope, std::nothrow), __LINE__);
    refused(checker.dependent_token("tok-valid", std::string_view(scope), std::nothrow), __LINE__);
    CHECK_EQ(checker.purge(token, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.purge(token_view, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.purge_identity(alice, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.purge_identity(std::string_view(alice), std::nothrow), TC_INVALID_ARGUMENT);

    // The throwing overloads: Error(TC_INVALID_ARGUMENT) naming the NUL.
    std::vector<std::optional<tc::Error>> errors;
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.check(token)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.check(token_view)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.try_check(token)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.authorize(token, plain_request)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.authorize("tok-valid", request)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.dependent_token(token, TRANSFER_SCOPE)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, (void)checker.dependent_token("tok-valid", scope)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.purge(token)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.purge_identity(alice)));

    // The async ones: not started, so no callback; Error or the status.
    std::atomic<int> calls{0};
    auto cb = [&](tc::Result) { calls++; };
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.check_async(token, cb)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.check_async(token_view, cb)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.authorize_async(token, plain_request, cb)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.authorize_async("tok-valid", request, cb)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.dependent_token_async(token, TRANSFER_SCOPE, cb)));
    errors.push_back(EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.dependent_token_async("tok-valid", scope, cb)));
    CHECK_EQ(checker.check_async(token, cb, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.authorize_async("tok-valid", request, cb, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.dependent_token_async("tok-valid", scope, cb, std::nothrow), TC_INVALID_ARGUMENT);
    for (const auto &e : errors) {
        if (e) {
            CHECK(has(e->message(), "NUL"));
            CHECK(has(e->json(), "\"TC_INVALID_ARGUMENT\""));
        }
    }

    // Nothing was purged: tok-valid is still answered from the cache.
    std::optional<tc::Result> hit = checker.try_check("tok-valid");
    CHECK(hit.has_value());
    if (hit)
        CHECK(has(hit->json, "\"source\":\"memory\""));
    CHECK(checker.dependent_token("tok-valid", TRANSFER_SCOPE).ok());
    CHECK_EQ(calls.load(), 0);
}

void test_async() {
    std::promise<tc::Result> p;
    std::future<tc::Result> f = p.get_future();
    std::atomic<bool> other_thread{false};
    const std::thread::id me = std::this_thread::get_id();
    {
        tc::Checker checker(config());
        checker.purge("tok-valid");
        checker.check_async("tok-valid", [&](tc::Result r) {
            other_thread = std::this_thread::get_id() != me;
            p.set_value(std::move(r));
        });
        // The checker is destroyed here; the check keeps its own reference.
    }
    tc::Result r = wait(f);
    CHECK(r.ok());
    CHECK(has(r.json, "\"active\":true"));
    CHECK(other_thread.load());

    tc::Checker checker(config());
    std::promise<tc::Result> p2;
    auto f2 = p2.get_future();
    checker.check_async("tok-inactive", [&](tc::Result res) { p2.set_value(std::move(res)); });
    tc::Result r2 = wait(f2);
    CHECK_EQ(r2.status, TC_INACTIVE_TOKEN);
    CHECK(!r2.error_message().empty());

    // Blocking calls from the callback (a library thread) answer TC_WOULD_BLOCK on a miss.
    checker.purge("tok-bob");
    std::promise<tc::Result> p3;
    auto f3 = p3.get_future();
    checker.check_async("tok-wrong-aud", [&](tc::Result) { p3.set_value(checker.check("tok-bob", std::nothrow)); });
    CHECK_EQ(wait(f3).status, TC_WOULD_BLOCK);

    std::promise<tc::Result> p4;
    auto f4 = p4.get_future();
    checker.authorize_async("tok-valid", std::string("{\"allowed_principals\":[\"") + ALICE + "\"]}",
                            [&](tc::Result res) { p4.set_value(std::move(res)); });
    tc::Result r4 = wait(f4);
    CHECK(r4.ok());
    CHECK(has(r4.json, "\"authorization\""));

    std::promise<tc::Result> p5;
    auto f5 = p5.get_future();
    checker.dependent_token_async("tok-valid", TRANSFER_SCOPE, [&](tc::Result res) { p5.set_value(std::move(res)); });
    tc::Result r5 = wait(f5);
    CHECK(r5.ok());
    CHECK(has(r5.json, "\"access_token\""));

    // Not started: no callback, an error instead.
    std::atomic<int> calls{0};
    CHECK_EQ(checker.check_async(nullptr, [&](tc::Result) { calls++; }, std::nothrow), TC_INVALID_ARGUMENT);
    CHECK_EQ(checker.check_async("tok-valid", tc::Callback(), std::nothrow), TC_INVALID_ARGUMENT);
    EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.check_async(std::string("a\0b", 3), [&](tc::Result) { calls++; }));
    tc::Checker moved_from(std::move(checker));
    EXPECT_ERROR(TC_INVALID_ARGUMENT, checker.check_async("tok-valid", [&](tc::Result) { calls++; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_EQ(calls.load(), 0);

    // Many at once, from several threads.
    constexpr int N = 64;
    std::atomic<int> done{0}, ok{0};
    std::promise<void> all;
    auto all_f = all.get_future();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&] {
            for (int i = 0; i < N / 4; i++)
                moved_from.check_async("tok-valid", [&](tc::Result res) {
                    if (res.ok())
                        ok++;
                    if (++done == N)
                        all.set_value();
                });
        });
    for (auto &t : threads)
        t.join();
    CHECK(all_f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    CHECK_EQ(ok.load(), N);
}

void test_logger_and_metrics() {
    std::mutex m;
    std::vector<std::pair<tc_log_level, std::string>> lines;
    tc::set_logger(
        [&](tc_log_level level, std::string_view message) {
            std::lock_guard<std::mutex> lock(m);
            lines.emplace_back(level, std::string(message));
        },
        TC_LOG_DEBUG);
    tc::Checker checker(config());
    checker.purge("tok-bob");
    CHECK(checker.check("tok-bob").ok());               // a request: logged at debug
    (void)checker.check("tok-inactive", std::nothrow);
    std::size_t seen = 0;
    {
        std::lock_guard<std::mutex> lock(m);
        seen = lines.size();
        for (const auto &l : lines) {
            CHECK(l.first >= TC_LOG_ERROR && l.first <= TC_LOG_DEBUG);
            CHECK(!has(l.second, "tok-"));                // never a token
            CHECK(!has(l.second, "test-secret"));         // never a secret
        }
    }
    CHECK(seen > 0);
    tc::clear_logger();
    checker.purge("tok-bob");
    CHECK(checker.check("tok-bob").ok());
    {
        std::lock_guard<std::mutex> lock(m);
        CHECK_EQ(lines.size(), seen);                     // nothing after clear_logger
    }
    EXPECT_ERROR(TC_INVALID_ARGUMENT, tc::set_logger([](tc_log_level, std::string_view) {},
                                                     static_cast<tc_log_level>(99)));
    // Replacing a logger: the old one is destroyed (LeakSanitizer checks), the new one is called.
    std::atomic<int> a{0}, b{0};
    tc::set_logger([&](tc_log_level, std::string_view) { a++; }, TC_LOG_DEBUG);
    tc::set_logger([&](tc_log_level, std::string_view) { b++; }, TC_LOG_DEBUG);
    checker.purge("tok-bob");
    CHECK(checker.check("tok-bob").ok());
    tc::clear_logger();
    CHECK_EQ(a.load(), 0);
    CHECK(b.load() > 0);

    std::string text = tc::metrics();
    CHECK(has(text, "tokenchecker_checks_total"));
    CHECK(has(text, "# TYPE"));
}

struct Test {
    const char *name;
    void (*fn)();
};

} // namespace

int main() {
    const char *url = std::getenv("FAKE_GLOBUS_URL");
    if (url == nullptr || *url == '\0') {
        std::cerr << "FAKE_GLOBUS_URL is not set (run target/release/fake-globus; tests/ecosystem/run.sh does)\n";
        return 2;
    }
    g_url = url;
    const Test tests[] = {
        {"versions and ABI", test_versions},
        {"invalid config throws Error(TC_INVALID_CONFIG)", test_invalid_config},
        {"valid token", test_valid},
        {"inactive token throws Error(TC_INACTIVE_TOKEN)", test_inactive_throws},
        {"nothrow variants", test_nothrow},
        {"move semantics", test_move},
        {"authorize", test_authorize},
        {"dependent token", test_dependent_token},
        {"purge and try_check", test_purge_and_try_check},
        {"async callbacks", test_async},
        {"strings with an embedded NUL are refused", test_embedded_nul},
        {"logger and metrics", test_logger_and_metrics},
    };
    int passed = 0, failed = 0;
    for (const Test &t : tests) {
        g_failures_in_test = 0;
        try {
            t.fn();
        } catch (const std::exception &e) {
            std::cout << "#   unexpected exception: " << e.what() << std::endl;
            g_failures_in_test++;
        }
        if (g_failures_in_test == 0) {
            passed++;
            std::cout << "ok - " << t.name << std::endl;
        } else {
            failed++;
            std::cout << "not ok - " << t.name << std::endl;
        }
    }
    std::cout << passed << " passed, " << failed << " failed" << std::endl;
    return failed == 0 ? 0 : 1;
}
