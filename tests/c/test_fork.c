/* Tests of tokenchecker in forked processes, and of the one deadline per call.
 *
 * A checker created (and used) before fork() must work in the child: the child's first miss
 * answers, a checker created in the child works, and the parent is unaffected. The forks here
 * happen while other threads of the parent are in the middle of fetches (a latency fault keeps
 * them there), the hardest case: the child inherits a runtime without its workers, pooled
 * connections, held locks and in-flight fetches whose threads do not exist in it.
 *
 * Every child has an alarm: a hang kills it with SIGALRM, which the parent reports as a failure
 * (before the fix, the child's first miss blocked forever). */

#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define TEST_SCOPE "urn:globus:auth:scope:test:all"
/* How long a child may take for all of its checks before it is killed as hung. */
#define CHILD_ALARM_S 30

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms_c(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static tc_checker *make_checker(const char *extra) {
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\","
             "\"expected_scopes\":[\"" TEST_SCOPE "\"],\"auth_url\":\"%s\",\"groups_url\":\"%s\"%s}",
             fake_url, fake_url, extra ? extra : "");
    tc_checker *c = NULL;
    char *err = NULL;
    tc_status st = tc_new(cfg, &c, &err);
    if (st != TC_OK)
        printf("#   tc_new failed: %s %s\n", tc_status_name(st), err ? err : "");
    tc_string_free(err);
    return c;
}

/* 0 when tc_check answers TC_OK, active, with `identity` among the identities. */
static int check_ok(const tc_checker *c, const char *token, const char *identity) {
    char *json = NULL;
    tc_status st = tc_check(c, token, &json);
    int ok = st == TC_OK && json_has(json, "\"active\":true") && (!identity || json_has(json, identity));
    if (!ok)
        printf("#   [pid %d] tc_check(%s): %s %.200s\n", (int)getpid(), token, tc_status_name(st),
               json ? json : "(null)");
    tc_string_free(json);
    return ok ? 0 : 1;
}

/* Waits for the child; 0 when it exited 0. */
static int reap(pid_t pid, const char *what) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        printf("#   waitpid failed for %s\n", what);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        printf("#   %s: the child was killed by signal %d%s\n", what, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (it hung)" : "");
        return 1;
    }
    if (WEXITSTATUS(status) != 0) {
        printf("#   %s: the child failed %d check(s)\n", what, WEXITSTATUS(status));
        return 1;
    }
    return 0;
}

typedef struct {
    const tc_checker *checker;
    const char *token;
    tc_status status;
} fetch_arg;

static void *fetch_thread(void *p) {
    fetch_arg *a = p;
    char *json = NULL;
    a->status = tc_check(a->checker, a->token, &json);
    tc_string_free(json);
    return NULL;
}

enum { BUSY = 8, CHILD_TOKENS = 20 };

/* The parent's checker, used before the fork (runtime started, connections pooled), forked while
 * BUSY threads wait on slow introspections: in the child, misses for new tokens on the inherited
 * checker answer, the token the parent's threads were fetching answers, a new checker works; the
 * parent's threads and later checks are unaffected. */
void test_fork_while_fetching(void) {
    tc_checker *c = make_checker(",\"request_timeout_ms\":5000");
    REQUIRE(c != NULL);
    char warm[128];
    new_token(warm, sizeof warm, "fork-warm", "{}");
    CHECK(check_ok(c, warm, NULL) == 0); /* the runtime runs and a connection is pooled */

    char busy_tokens[BUSY][128];
    char child_tokens[CHILD_TOKENS][128];
    for (int i = 0; i < BUSY; i++)
        new_token(busy_tokens[i], sizeof busy_tokens[i], "fork-busy", "{}");
    for (int i = 0; i < CHILD_TOKENS; i++)
        new_token(child_tokens[i], sizeof child_tokens[i], "fork-child",
                  "{\"identity_set\":[\"c41d0000-0000-4000-8000-000000000001\"]}");

    REQUIRE(fake_set_fault("{\"endpoint\":\"introspect\",\"latency_ms\":400,\"count\":8}") == 0);
    pthread_t threads[BUSY];
    fetch_arg args[BUSY];
    for (int i = 0; i < BUSY; i++) {
        args[i] = (fetch_arg){c, busy_tokens[i], TC_PANIC};
        REQUIRE(pthread_create(&threads[i], NULL, fetch_thread, &args[i]) == 0);
    }
    sleep_ms_c(150); /* the threads are now inside their fetches (400 ms each) */

    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_ALARM_S);
        int failures = 0;
        for (int i = 0; i < CHILD_TOKENS; i++)
            failures += check_ok(c, child_tokens[i], "c41d0000-0000-4000-8000-000000000001");
        for (int i = 0; i < CHILD_TOKENS; i++) /* now from the child's own cache */
            failures += check_ok(c, child_tokens[i], NULL);
        failures += check_ok(c, busy_tokens[0], NULL); /* the parent's fetch did not come along */
        failures += check_ok(c, warm, NULL);           /* the child's cache starts empty: a miss */
        tc_checker *mine = make_checker(NULL);
        failures += mine ? check_ok(mine, child_tokens[0], NULL) : 1;
        tc_free(mine);
        char *stats = NULL;
        if (tc_stats(&stats) != TC_OK || json_int(stats, "forks") < 1) {
            printf("#   the child's stats do not count the fork: %.300s\n", stats ? stats : "(null)");
            failures++;
        }
        tc_string_free(stats);
        fflush(stdout);
        _exit(failures > 100 ? 100 : failures);
    }
    for (int i = 0; i < BUSY; i++) {
        pthread_join(threads[i], NULL);
        CHECK_STATUS(args[i].status, TC_OK);
    }
    CHECK(reap(pid, "fork while fetching") == 0);
    char after[128];
    new_token(after, sizeof after, "fork-parent-after", "{}");
    CHECK(check_ok(c, after, NULL) == 0);
    CHECK(check_ok(c, warm, NULL) == 0);
    char *stats = NULL;
    REQUIRE(tc_stats(&stats) == TC_OK);
    CHECK(json_int(stats, "forks") == 0); /* the parent went through no fork of its own */
    tc_string_free(stats);
    tc_free(c);
}

/* A checker created before the fork and never used (tc_new probed the credentials): the child's
 * first miss answers. Then a grandchild of a child that used the library: the state is rebuilt
 * at every generation. */
void test_fork_created_before_any_use(void) {
    tc_checker *c = make_checker(NULL);
    REQUIRE(c != NULL);
    char tok[128], tok2[128];
    new_token(tok, sizeof tok, "fork-fresh", "{}");
    new_token(tok2, sizeof tok2, "fork-grandchild", "{}");
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_ALARM_S);
        int failures = check_ok(c, tok, NULL);
        fflush(stdout);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            alarm(CHILD_ALARM_S);
            int f = check_ok(c, tok2, NULL) + check_ok(c, tok, NULL);
            fflush(stdout);
            _exit(f);
        }
        failures += grandchild < 0 ? 1 : reap(grandchild, "grandchild");
        failures += check_ok(c, tok2, NULL);
        fflush(stdout);
        _exit(failures);
    }
    CHECK(reap(pid, "fork after tc_new") == 0);
    CHECK(check_ok(c, tok, NULL) == 0);
    tc_free(c);
}

/* Async checks started in the child, on a checker the parent used: the callbacks come. */
void test_fork_async_in_child(void) {
    tc_checker *c = make_checker(NULL);
    REQUIRE(c != NULL);
    char warm[128], tok[128];
    new_token(warm, sizeof warm, "fork-async-warm", "{}");
    new_token(tok, sizeof tok, "fork-async", "{}");
    CHECK(check_ok(c, warm, NULL) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_ALARM_S);
        waiter w;
        waiter_init(&w);
        int failures = 0;
        if (tc_check_async(c, tok, waiter_cb, &w) != TC_OK || tc_check_async(c, warm, waiter_cb, &w) != TC_OK)
            failures++;
        else if (waiter_wait(&w, 2, 20000) != 0 || w.ok != 2)
            failures++;
        waiter_destroy(&w);
        fflush(stdout);
        _exit(failures);
    }
    CHECK(reap(pid, "async in the child") == 0);
    tc_free(c);
}

/* call_timeout_ms bounds a whole tc_authorize end to end: with every endpoint slow, the call
 * ends near its deadline, not after one full request timeout per stage. */
void test_call_timeout_bounds_authorize(void) {
    tc_checker *c = make_checker(",\"request_timeout_ms\":3000,\"max_retries\":2,"
                                 "\"call_timeout_ms\":1500,\"verify_credentials\":false");
    REQUIRE(c != NULL);
    char tok[128];
    new_token(tok, sizeof tok, "call-deadline", "{\"groups\":[\"11111111-1111-4111-8111-111111111111\"]}");
    /* Each request answers after 1 s: introspection fits, the grant and Groups would not. */
    REQUIRE(fake_set_fault("{\"endpoint\":\"all\",\"latency_ms\":1000}") == 0);
    char *json = NULL;
    double t0 = mono_ms();
    tc_status st = tc_authorize(c, tok,
                                "{\"allowed_principals\":[\"urn:globus:groups:id:"
                                "11111111-1111-4111-8111-111111111111\"]}",
                                &json);
    double took = mono_ms() - t0;
    CHECK_STATUS(st, TC_AUTH_UNAVAILABLE);
    if (took > 2900)
        printf("#   tc_authorize took %.0f ms with call_timeout_ms 1500\n", took);
    CHECK(took < 2900); /* before: 1 s per stage and more, each with its own 3 s bound */
    tc_string_free(json);
    fake_clear_faults();
    tc_free(c);
}

/* An unknown call_timeout_ms value is refused at creation. */
void test_call_timeout_config(void) {
    char *err = NULL;
    tc_checker *c = NULL;
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"client_id\":\"test-client\",\"client_secret\":\"test-secret\","
             "\"expected_scopes\":[\"" TEST_SCOPE "\"],\"auth_url\":\"%s\",\"call_timeout_ms\":0}",
             fake_url);
    CHECK_STATUS(tc_new(cfg, &c, &err), TC_INVALID_CONFIG);
    CHECK(c == NULL);
    CHECK_HAS(err, "call_timeout_ms");
    tc_string_free(err);
}
