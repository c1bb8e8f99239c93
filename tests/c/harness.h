/*
 * Small helpers for the tokenchecker C tests: a TAP-like runner, the fake-globus
 * child process, a tiny HTTP/1.1 client for its control API, JSON substring checks
 * and a waiter for async callbacks. No JSON library: results are checked by substring.
 */
#ifndef TC_TEST_HARNESS_H
#define TC_TEST_HARNESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenchecker.h"

/* ---- runner ------------------------------------------------------------------------ */

extern int t_failed; /* set by CHECK/REQUIRE: the current test failed */

void t_diag(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Non-fatal check: records the failure and goes on. */
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            t_diag(__FILE__, __LINE__, "check failed: %s", #cond);                   \
            t_failed = 1;                                                             \
        }                                                                             \
    } while (0)

/* Fatal check: records the failure and leaves the test function. */
#define REQUIRE(cond)                                                                 \
    do {                                                                              \
        if (!(cond)) {                                                                \
            t_diag(__FILE__, __LINE__, "required: %s", #cond);                       \
            t_failed = 1;                                                             \
            return;                                                                   \
        }                                                                             \
    } while (0)

/* Status equality, printing both names on failure. */
#define CHECK_STATUS(got, want)                                                       \
    do {                                                                              \
        uint32_t got_ = (uint32_t)(got), want_ = (uint32_t)(want);                    \
        if (got_ != want_) {                                                          \
            t_diag(__FILE__, __LINE__, "%s: got %s, want %s", #got,                  \
                   tc_status_name(got_), tc_status_name(want_));                      \
            t_failed = 1;                                                             \
        }                                                                             \
    } while (0)

/* The document `json` (may be NULL) contains / lacks the substring `needle`. */
#define CHECK_HAS(json, needle)                                                       \
    do {                                                                              \
        const char *j_ = (json);                                                      \
        if (!json_has(j_, (needle))) {                                                \
            t_diag(__FILE__, __LINE__, "%s lacks %s; it is: %.400s", #json, (needle), \
                   j_ ? j_ : "(null)");                                               \
            t_failed = 1;                                                             \
        }                                                                             \
    } while (0)
#define CHECK_LACKS(json, needle)                                                     \
    do {                                                                              \
        const char *j_ = (json);                                                      \
        if (!j_ || json_has(j_, (needle))) {                                          \
            t_diag(__FILE__, __LINE__, "%s holds %s (or is NULL); it is: %.400s",     \
                   #json, (needle), j_ ? j_ : "(null)");                              \
            t_failed = 1;                                                             \
        }                                                                             \
    } while (0)

/* An error document with this code: {"error":{"code":"TC_…","message":…}} */
#define CHECK_ERROR_DOC(json, code_name) CHECK_HAS((json), "{\"error\":{\"code\":\"" code_name "\"")

double now_ms(void); /* monotonic clock, milliseconds */

/* ---- JSON substring helpers --------------------------------------------------------- */

int json_has(const char *json, const char *needle); /* 0 when json is NULL */
/* The value of member `key` of the first object in json (its own members only, not those of
 * nested objects): a pointer into json at the value, or NULL. json_member(doc, "requests")
 * gives the nested object, whose members json_int can then read. */
const char *json_member(const char *json, const char *key);
/* The integer value of member `key` (-1 when absent or not a non-negative integer). */
long json_int(const char *json, const char *key);
/* Copies the string value of member `key` into buf (no unescaping); NULL when absent. */
char *json_str(const char *json, const char *key, char *buf, size_t n);

/* ---- fake-globus -------------------------------------------------------------------- */

extern char fake_url[256]; /* "http://127.0.0.1:PORT" */

/* Starts the fake (path to the binary); exits the process on failure. Stopped at exit. */
void fake_start(const char *binary);
void fake_stop(void);

/* One HTTP/1.1 request to the fake; returns the HTTP status (-1 on I/O failure) and, when
 * out_body is not NULL, a malloc'ed body (free it). */
int http_request(const char *method, const char *path, const char *body, char **out_body);

typedef struct {
    long introspect, dependent_token, groups;
} counters;

int fake_counters(counters *c);           /* 0 on success */
int fake_reset(void);                     /* zero counters, clear faults */
int fake_add_tokens(const char *json);    /* POST /_control/tokens */
int fake_remove_token(const char *token); /* DELETE /_control/tokens/<token> */
int fake_set_fault(const char *json);     /* POST /_control/faults */
int fake_clear_faults(void);              /* DELETE /_control/faults */

/* Registers a new token "c<n>-<tag>" with this spec (a JSON object) at the fake and writes its
 * name to buf. Names never repeat in one run, so the process-wide cache never knows them. */
void new_token(char *buf, size_t n, const char *tag, const char *spec);

/* ---- async callbacks ---------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;          /* callbacks received */
    int ok;             /* of which TC_OK */
    tc_status status;   /* status of the first callback */
    char *json;         /* json of the first callback (later ones are freed) */
    int on_caller;      /* a callback ran on the thread that created the waiter */
    pthread_t creator;
} waiter;

void waiter_init(waiter *w);
void waiter_destroy(waiter *w); /* frees json */
void waiter_cb(void *user_data, tc_status status, char *json); /* a tc_callback */
/* Waits until `calls` callbacks arrived; 0 on success, -1 after timeout_ms. */
int waiter_wait(waiter *w, int calls, int timeout_ms);
int waiter_calls(waiter *w);

#endif
