/*
 * Node-API (C, NAPI_VERSION 8) addon over the tokenchecker C ABI.
 *
 * Design
 * ------
 * - A thin layer: native functions return `[status, json]` for answers known synchronously, or
 *   `undefined` once the work was started; `callback(status, json)` is then called later,
 *   exactly once. index.js owns promises and the shape of results.
 * - The answer path (check, authorize): checkAnswer() is one tc_try_check_answer, and
 *   authorizeAnswer() one tc_try_authorize_answer with a compiled policy (policyNew wraps
 *   tc_policy_new). A cached answer's source, age and id, and for authorize the index of the
 *   principal that matched, go back through a Float64Array made once per addon instance
 *   (`answerOut`). The object made from the answer's fields (tc_answer_fields, never a JSON
 *   parse) is kept in the answer memo below, keyed by the answer's id and bounded by bytes
 *   (TOKENCHECKER_MEMO_BYTES): a memo hit creates no JavaScript value here at all (index.js reads
 *   the frozen template from the memo's array), a miss makes the template once.
 * - Every asynchronous call (tc_check_async, tc_authorize_async, tc_dependent_token_async)
 *   runs on the library's own tokio runtime; nothing here occupies libuv's thread pool while
 *   waiting on the network. Completions come back through ONE napi_threadsafe_function per
 *   addon instance (per Node environment: the main thread and each worker get their own),
 *   unref'd while nothing is in flight (the process may exit) and ref'd while something is.
 * - Tokens are copied into a stack buffer (or, beyond 1 KiB, a heap one) zeroed after use.
 *
 * Lifetimes
 * ---------
 * - addon_t: shared with the library's runtime threads, so reference counted atomically: one
 *   reference for the environment (instance-data finalizer), one for the threadsafe function
 *   (its finalizer), one per request in flight. Its mutex makes "is the threadsafe function
 *   still there?" and the call to it one step, safe against environment teardown.
 * - checker_t: `live` = 1 until close() (or the handle's collection) + one per operation in
 *   flight: tc_free runs at 0 (closed AND idle). `refs` = 1 for the JavaScript handle + one per
 *   operation in flight: the struct is freed at 0. When a worker's environment is torn down
 *   first, the library thread that brings an answer releases them itself (hence atomics).
 * - policy_t: a compiled policy, used only by synchronous calls of its environment: freed by
 *   policyClose() or the handle's collection.
 * - purge / purge_identity / creation with a callback run on libuv's pool (napi_async_work):
 *   they are short, blocking, and may touch a shared cache backend (Redis, Memcached).
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenchecker.h"

/* ---- helpers ------------------------------------------------------------------------------ */

#define NAPI_CALL(env, call)                                                                  \
  do {                                                                                        \
    napi_status status_ = (call);                                                             \
    if (status_ != napi_ok) {                                                                 \
      throw_last_error((env), #call);                                                         \
      return NULL;                                                                            \
    }                                                                                         \
  } while (0)

static void throw_last_error(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[512];
  snprintf(msg, sizeof msg, "tokenchecker addon: %s failed: %s", what,
           info && info->error_message ? info->error_message : "unknown error");
  napi_throw_error(env, "TC_ADDON", msg);
}

/* Binding-level status for "this checker was closed" (outside the library's range). */
#define TC_ADDON_CLOSED 0xFFFFFFFFu

/* ---- the answer memo ------------------------------------------------------------------------
 *
 * The memo rule of include/tokenchecker.h (beside tc_answer_id): the object built from an
 * answer's fields (tc_answer_fields) is kept, keyed by the answer's id, in one memo per process
 * bounded by bytes: TOKENCHECKER_MEMO_BYTES (read once per process; default 16 MiB; 0 turns it
 * off). JavaScript objects belong to one environment (the main thread, each worker), so each
 * environment keeps its own table, and all of them draw on one process-wide byte budget.
 *
 * An entry's bytes: the lengths of the strings it holds on its own (sub, username, name, email
 * unless it is the username, identity ids other than sub, the effective identity and the
 * principals, "urn:globus:auth:identity:" + id, unless one is the effective identity), plus a
 * fixed per-entry overhead, MEMO_ENTRY_OVERHEAD = 464 bytes: what V8 and this file spend on an
 * entry besides those characters. Measured (bench/bench.js, 100,000 users of one identity each,
 * ~28,000 entries): ~540 B of V8 heap per entry, of which ~130 B are the counted characters, so
 * ~410 B of objects and headers (the frozen template, 13 properties: 128 B; its identities and
 * principals arrays: 56 B each; the headers of its four own strings and their alignment; its
 * element of `slots`); and in this file 44-88 B (the id table, 12 B a key at a load of 1/4 to
 * 1/2; 20 B of slot records, grown by doubling). Strings and lists many answers share (client
 * id, scope and audience lists) are kept once, in a small table per environment (INTERN_SLOTS
 * values of at most INTERN_MAX_KEY bytes: bounded, a few tens of KiB), and not counted per
 * entry.
 *
 * The table maps an answer id to a slot: an index in the JavaScript array `slots` (given by
 * index.js), which holds the frozen template; a hit reads `slots[answerOut[0]]` in JavaScript
 * without another native call. Replacement is FIFO (a ring of slots in admission order); once
 * the budget is full, a new entry is admitted one time in 16, at random, evicting the oldest
 * entries of this environment until it fits: a cyclic working set larger than the budget then
 * keeps most of the memo useful instead of churning through it. Answer ids are never reused, so
 * an entry of an answer that was refetched or purged is simply never hit again and leaves in
 * its turn. The memo never answers by itself: every check asks the library first.
 */

#define MEMO_DEFAULT_BYTES ((uint64_t)16 << 20)
#define MEMO_ENTRY_OVERHEAD 464u

static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static uint64_t memo_limit = MEMO_DEFAULT_BYTES; /* bytes, for the whole process */
static bool memo_limit_ok = true;                /* TOKENCHECKER_MEMO_BYTES was readable */
static _Atomic uint64_t memo_used;               /* bytes held by every environment's memo */

static void memo_read_env(void) {
  const char *v = getenv("TOKENCHECKER_MEMO_BYTES");
  if (v == NULL || *v == '\0') return;
  uint64_t n = 0;
  for (const char *p = v; *p != '\0'; p++) {
    if (*p < '0' || *p > '9' || n > (UINT64_C(1) << 50)) {
      memo_limit_ok = false;
      return;
    }
    n = n * 10 + (uint64_t)(*p - '0');
  }
  memo_limit = n;
}

/* Takes `n` bytes of the process's budget; false when they are not there. */
static bool memo_budget_take(uint64_t n) {
  uint64_t cur = atomic_load(&memo_used);
  do {
    if (cur + n > memo_limit) return false;
  } while (!atomic_compare_exchange_weak(&memo_used, &cur, cur + n));
  return true;
}

#define NO_SLOT UINT32_MAX

typedef struct memo {
  uint64_t *keys;   /* answer ids, 0 = empty (ids start at 1) */
  uint32_t *vals;   /* the slot of each key */
  uint32_t mask;    /* table capacity - 1 (a power of two); 0 until allocated */
  uint32_t count;   /* entries */
  uint64_t *slot_id;    /* per slot: the id it holds, 0 when free */
  uint32_t *slot_bytes; /* per slot: the bytes it counts */
  uint32_t nslots;      /* slots handed out so far (the JS array's length) */
  uint32_t slots_cap;
  uint32_t *free_slots; /* a stack of free slots */
  uint32_t nfree;
  uint32_t *fifo;       /* live slots in admission order, a ring of capacity slots_cap */
  uint32_t fifo_head, fifo_len;
  uint64_t bytes;       /* this environment's share of memo_used */
  uint64_t hits, misses, evictions, refused;
  uint64_t rng;
} memo_t;

static uint32_t memo_home(const memo_t *m, uint64_t id) {
  return (uint32_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & m->mask;
}

static uint32_t memo_find(const memo_t *m, uint64_t id) {
  if (m->mask == 0) return NO_SLOT;
  for (uint32_t i = memo_home(m, id);; i = (i + 1) & m->mask) {
    if (m->keys[i] == id) return m->vals[i];
    if (m->keys[i] == 0) return NO_SLOT;
  }
}

static void memo_put_key(memo_t *m, uint64_t id, uint32_t slot) {
  uint32_t i = memo_home(m, id);
  while (m->keys[i] != 0) i = (i + 1) & m->mask;
  m->keys[i] = id;
  m->vals[i] = slot;
}

/* Room for one more key (load <= 1/2); false when out of memory. */
static bool memo_reserve_key(memo_t *m) {
  uint32_t cap = m->mask + 1;
  if (m->mask != 0 && (m->count + 1) * 2 <= cap) return true;
  uint32_t ncap = m->mask == 0 ? 1024 : cap * 2;
  uint64_t *keys = calloc(ncap, sizeof *keys);
  uint32_t *vals = malloc(ncap * sizeof *vals);
  if (keys == NULL || vals == NULL) {
    free(keys);
    free(vals);
    return false;
  }
  uint64_t *old_keys = m->keys;
  uint32_t *old_vals = m->vals;
  uint32_t old_cap = m->mask == 0 ? 0 : cap;
  m->keys = keys;
  m->vals = vals;
  m->mask = ncap - 1;
  for (uint32_t i = 0; i < old_cap; i++) {
    if (old_keys[i] != 0) memo_put_key(m, old_keys[i], old_vals[i]);
  }
  free(old_keys);
  free(old_vals);
  return true;
}

/* Removes `id` (present) with backward-shift deletion: linear probing without tombstones. */
static void memo_del_key(memo_t *m, uint64_t id) {
  uint32_t i = memo_home(m, id);
  while (m->keys[i] != id) i = (i + 1) & m->mask;
  for (uint32_t j = (i + 1) & m->mask; m->keys[j] != 0; j = (j + 1) & m->mask) {
    uint32_t k = memo_home(m, m->keys[j]);
    /* can the entry at j move to the hole at i? (its home is not cyclically in (i, j]) */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->count--;
}

/* Room for one more slot; false when out of memory. */
static bool memo_reserve_slot(memo_t *m) {
  if (m->nfree > 0 || m->nslots < m->slots_cap) return true;
  uint32_t ncap = m->slots_cap == 0 ? 1024 : m->slots_cap * 2;
  uint64_t *ids = realloc(m->slot_id, ncap * sizeof *ids);
  if (ids == NULL) return false;
  m->slot_id = ids;
  uint32_t *bytes = realloc(m->slot_bytes, ncap * sizeof *bytes);
  if (bytes == NULL) return false;
  m->slot_bytes = bytes;
  uint32_t *fs = realloc(m->free_slots, ncap * sizeof *fs);
  if (fs == NULL) return false;
  m->free_slots = fs;
  uint32_t *fifo = malloc(ncap * sizeof *fifo);
  if (fifo == NULL) return false;
  for (uint32_t i = 0; i < m->fifo_len; i++) fifo[i] = m->fifo[(m->fifo_head + i) % m->slots_cap];
  free(m->fifo);
  m->fifo = fifo;
  m->fifo_head = 0;
  m->slots_cap = ncap;
  return true;
}

static uint64_t memo_random(memo_t *m) {
  /* xorshift64* */
  uint64_t x = m->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  m->rng = x;
  return x * UINT64_C(0x2545F4914F6CDD1D);
}

static void memo_free(memo_t *m) {
  atomic_fetch_sub(&memo_used, m->bytes);
  free(m->keys);
  free(m->vals);
  free(m->slot_id);
  free(m->slot_bytes);
  free(m->free_slots);
  free(m->fifo);
  uint64_t rng = m->rng;
  memset(m, 0, sizeof *m);
  m->rng = rng;
}

/* ---- values many answers share ------------------------------------------------------------- */

#define INTERN_SLOTS 64
#define INTERN_MAX_KEY 512

typedef struct intern {
  uint64_t hash;
  uint32_t len;  /* of key; 0: empty slot */
  char *key;     /* kind byte, then the value's bytes (lists: length-prefixed items) */
  napi_ref value;
} intern_t;

/* ---- per-environment state of the answer path --------------------------------------------- */

/* answerOut (a Float64Array shared with index.js): what a call on the answer path reports
 * besides its return value. */
enum {
  OUT_SLOT,    /* a memo hit: the slot of the template in `slots`; -1: not cached */
  OUT_SOURCE,  /* the cache source's index in the library's list (tc_library_info "sources") */
  OUT_AGE,     /* age_ms */
  OUT_MATCHED, /* authorizeAnswer: the index of the policy's principal that matched */
  OUT_ID,      /* the answer's id */
  OUT_EXP,     /* while a template is made: exp, nbf, iat (NaN: absent) */
  OUT_NBF,
  OUT_IAT,
  OUT_LEN
};

#define MAX_SOURCES 16

typedef struct answers {
  memo_t memo;
  intern_t intern[INTERN_SLOTS];
  napi_ref slots_ref;  /* the JS array of templates */
  napi_ref maker_ref;  /* index.js's function making a template */
  napi_ref keeper_ref; /* index.js's function copying a template the memo keeps */
  napi_ref empty_ref;  /* a frozen empty array */
  char *sources[MAX_SOURCES]; /* the library's source names, in its order */
  uint32_t nsources;
  const char *seen_ptr[MAX_SOURCES]; /* tc_answer_meta.source pointers seen, and their index */
  uint32_t seen_index[MAX_SOURCES];
  uint32_t nseen;
} answers_t;

static double source_index(answers_t *s, const char *src) {
  for (uint32_t i = 0; i < s->nseen; i++) {
    if (s->seen_ptr[i] == src) return s->seen_index[i];
  }
  uint32_t idx = s->nsources; /* past the end: a source this binding does not know */
  for (uint32_t i = 0; src != NULL && i < s->nsources; i++) {
    if (strcmp(src, s->sources[i]) == 0) idx = i;
  }
  if (src != NULL && s->nseen < MAX_SOURCES) {
    s->seen_ptr[s->nseen] = src;
    s->seen_index[s->nseen++] = idx;
  }
  return idx;
}

static void answers_free(napi_env env, answers_t *s) {
  memo_free(&s->memo);
  for (int i = 0; i < INTERN_SLOTS; i++) {
    if (s->intern[i].value != NULL) napi_delete_reference(env, s->intern[i].value);
    free(s->intern[i].key);
  }
  memset(s->intern, 0, sizeof s->intern);
  if (s->slots_ref != NULL) napi_delete_reference(env, s->slots_ref);
  if (s->maker_ref != NULL) napi_delete_reference(env, s->maker_ref);
  if (s->keeper_ref != NULL) napi_delete_reference(env, s->keeper_ref);
  if (s->empty_ref != NULL) napi_delete_reference(env, s->empty_ref);
  s->slots_ref = s->maker_ref = s->keeper_ref = s->empty_ref = NULL;
  for (uint32_t i = 0; i < s->nsources; i++) free(s->sources[i]);
  s->nsources = s->nseen = 0;
}

/* ---- per-environment state ------------------------------------------------------------------ */

typedef struct addon {
  atomic_int refs;               /* env + tsfn + requests in flight */
  pthread_mutex_t mu;            /* guards tsfn against its own finalization */
  napi_threadsafe_function tsfn; /* NULL once finalized */
  uint32_t pending;              /* main thread only: async requests not yet delivered */
  double *out;                   /* answerOut's data (OUT_* below); main thread only */
  napi_ref out_ref;              /* keeps answerOut (and so `out`) alive */
  answers_t answers;             /* main thread only: the answer memo and what it needs */
} addon_t;

static void addon_release(addon_t *a) {
  if (atomic_fetch_sub(&a->refs, 1) == 1) {
    pthread_mutex_destroy(&a->mu);
    free(a);
  }
}

typedef struct checker {
  _Atomic(tc_checker *) tc; /* NULL once freed */
  atomic_uint live;         /* open + operations in flight */
  atomic_uint refs;         /* handle + operations in flight */
  atomic_uint ops;          /* operations in flight */
  bool closed;              /* main thread only */
} checker_t;

static void checker_live_release(checker_t *c) {
  if (atomic_fetch_sub(&c->live, 1) == 1) tc_free(atomic_exchange(&c->tc, NULL));
}

static void checker_refs_release(checker_t *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

/* Main thread: an operation starts (the checker is open). */
static void checker_op_start(checker_t *c) {
  atomic_fetch_add(&c->live, 1);
  atomic_fetch_add(&c->refs, 1);
  atomic_fetch_add(&c->ops, 1);
}

/* Any thread: an operation is over. */
static void checker_op_done(checker_t *c) {
  atomic_fetch_sub(&c->ops, 1);
  checker_live_release(c);
  checker_refs_release(c);
}

/* Main thread: close() or the handle's collection; idempotent. */
static void checker_close(checker_t *c) {
  if (!c->closed) {
    c->closed = true;
    checker_live_release(c);
  }
}

static tc_checker *checker_tc(checker_t *c) {
  return atomic_load(&c->tc);
}

static const napi_type_tag CHECKER_TAG = {0x746f6b656e636865ULL, 0x636b65722d6e6f64ULL};

/* What a native function does, as its N-API `data` (see NAPI_MODULE_INIT). */
typedef enum { OP_CHECK, OP_AUTHORIZE, OP_DEPENDENT, OP_TRY_CHECK, OP_TRY_AUTHORIZE } op_kind;
typedef enum { WORK_CREATE, WORK_PURGE, WORK_PURGE_IDENTITY, CREATE_SYNC } work_kind;

/* One asynchronous library call in flight. */
typedef struct request {
  addon_t *addon;
  checker_t *checker;
  napi_ref callback; /* main thread only */
  op_kind kind;
  uint32_t status;
  char *json;
} request_t;

/* ---- arguments and answers ---------------------------------------------------------------- */

#define SMALL_STR 1024

/* Copies a JS string into `small` (SMALL_STR bytes) when it fits, else into a malloc'd buffer;
 * NUL-terminated. Returns 0 on success, 1 when the value is not a string, 2 when it contains a
 * NUL character, -1 on a N-API failure (exception pending). */
static int get_str(napi_env env, napi_value v, char *small, char **out) {
  size_t len;
  *out = NULL;
  napi_status st = napi_get_value_string_utf8(env, v, small, SMALL_STR, &len);
  if (st == napi_string_expected) return 1;
  if (st != napi_ok) goto fail;
  char *buf = small;
  /* complete when at least 4 bytes were left over (a UTF-8 character is <= 4) */
  if (len + 5 > SMALL_STR) {
    explicit_bzero(small, SMALL_STR);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) goto fail;
    if ((buf = malloc(len + 1)) == NULL) {
      napi_throw_error(env, "TC_ADDON", "out of memory");
      return -1;
    }
    if (napi_get_value_string_utf8(env, v, buf, len + 1, &len) != napi_ok) {
      free(buf);
      goto fail;
    }
  }
  if (memchr(buf, 0, len) != NULL) {
    explicit_bzero(buf, len);
    if (buf != small) free(buf);
    return 2;
  }
  *out = buf;
  return 0;
fail:
  throw_last_error(env, "napi_get_value_string_utf8");
  return -1;
}

/* Zeroes and releases what get_str gave (NULL is ignored). */
static void drop_str(char *s, const char *small) {
  if (s == NULL) return;
  explicit_bzero(s, strlen(s));
  if (s != small) free(s);
}

/* [status, value] */
static napi_value pair(napi_env env, uint32_t status, napi_value value) {
  napi_value arr, st;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_create_uint32(env, status, &st));
  NAPI_CALL(env, napi_set_element(env, arr, 0, st));
  NAPI_CALL(env, napi_set_element(env, arr, 1, value));
  return arr;
}

/* [status, json] (json NULL: null) */
static napi_value make_answer(napi_env env, uint32_t status, const char *json) {
  napi_value js;
  NAPI_CALL(env, json != NULL ? napi_create_string_utf8(env, json, NAPI_AUTO_LENGTH, &js)
                              : napi_get_null(env, &js));
  return pair(env, status, js);
}

/* An error answer made here (the library did not produce a document). */
static napi_value make_error_answer(napi_env env, uint32_t status, const char *message) {
  char buf[512];
  const char *code = status == TC_ADDON_CLOSED ? "TC_CLOSED" : tc_status_name(status);
  /* messages are fixed strings of this file: no escaping needed */
  snprintf(buf, sizeof buf, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
  return make_answer(env, status, buf);
}

/* The error answer for get_str's result `rc` (1 or 2) about `what` ("the token", …). */
static napi_value bad_str(napi_env env, uint32_t status, int rc, const char *what) {
  char msg[64];
  snprintf(msg, sizeof msg, "%s %s", what, rc == 1 ? "must be a string" : "contains a NUL character");
  return make_error_answer(env, status, msg);
}

/* The checker of a handle; NULL (with a TypeError pending) when it is not a checker handle. */
static checker_t *unwrap_checker(napi_env env, napi_value handle) {
  bool ok = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, handle, &CHECKER_TAG, &ok) != napi_ok || !ok ||
      napi_get_value_external(env, handle, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "not a tokenchecker handle");
    return NULL;
  }
  return p;
}

/* The open checker of argv[0] and a copy of the string argv[1] (`what`) of an operation. NULL
 * when the operation stops here: then *ans is the answer to return ([status, json]), or NULL
 * with an exception pending. */
static checker_t *op_args(napi_env env, napi_value *argv, const char *what, char *small,
                          char **str, napi_value *ans) {
  *ans = NULL;
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  if (c->closed) {
    *ans = make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");
    return NULL;
  }
  int rc = get_str(env, argv[1], small, str);
  if (rc == 0) return c;
  if (rc > 0) *ans = bad_str(env, TC_INVALID_ARGUMENT, rc, what);
  return NULL;
}

static addon_t *get_addon(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static bool is_function(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_function;
}

/* Calls back the function of `ref` (and deletes the reference) with (status, value): `value`,
 * else the string `json`, else null. An exception it throws surfaces as an uncaught one. */
static void call_back(napi_env env, napi_ref ref, uint32_t status, napi_value value, const char *json) {
  napi_value cb = NULL, argv[2] = {NULL, value}, recv;
  bool ok = napi_get_reference_value(env, ref, &cb) == napi_ok && cb != NULL;
  ok = ok && napi_get_undefined(env, &recv) == napi_ok;
  napi_delete_reference(env, ref);
  ok = ok && napi_create_uint32(env, status, &argv[0]) == napi_ok;
  if (value == NULL) {
    ok = ok && (json != NULL ? napi_create_string_utf8(env, json, NAPI_AUTO_LENGTH, &argv[1])
                             : napi_get_null(env, &argv[1])) == napi_ok;
  }
  if (ok) napi_call_function(env, recv, cb, 2, argv, NULL);
}

/* ---- the threadsafe function ------------------------------------------------------------- */

/* Releases a delivered (or undeliverable) request: its answer (zeroed if it holds a secret). */
static void request_free(request_t *r) {
  if (r->kind == OP_DEPENDENT && r->json != NULL) explicit_bzero(r->json, strlen(r->json));
  tc_string_free(r->json);
  addon_release(r->addon);
  free(r);
}

/* Library runtime thread. */
static void on_library_done(void *user_data, tc_status status, char *json) {
  request_t *r = user_data;
  addon_t *a = r->addon;
  r->status = (uint32_t)status;
  r->json = json;
  napi_status ns = napi_closing;
  pthread_mutex_lock(&a->mu);
  if (a->tsfn != NULL) ns = napi_call_threadsafe_function(a->tsfn, r, napi_tsfn_nonblocking);
  pthread_mutex_unlock(&a->mu);
  if (ns != napi_ok) {
    /* The environment is going away: nobody is left to hear the answer. The callback
     * reference dies with the environment. */
    checker_op_done(r->checker);
    request_free(r);
  }
}

/* Main thread. `env` is NULL when the function is being torn down with items still queued. */
static void call_js(napi_env env, napi_value unused, void *context, void *data) {
  addon_t *a = context;
  request_t *r = data;
  checker_op_done(r->checker);
  if (env != NULL) {
    if (--a->pending == 0) napi_unref_threadsafe_function(env, a->tsfn);
    call_back(env, r->callback, r->status, NULL, r->json);
  }
  request_free(r);
}

static void tsfn_finalize(napi_env env, void *finalize_data, void *hint) {
  addon_t *a = finalize_data;
  pthread_mutex_lock(&a->mu);
  a->tsfn = NULL;
  pthread_mutex_unlock(&a->mu);
  addon_release(a);
}

static void addon_finalize(napi_env env, void *data, void *hint) {
  addon_t *a = data;
  /* Finalizers may delete references (Node finalizes these before the plain ones). */
  if (a->out_ref != NULL) napi_delete_reference(env, a->out_ref);
  answers_free(env, &a->answers);
  addon_release(a);
}

/* ---- checker handles --------------------------------------------------------------------- */

static void handle_finalize(napi_env env, void *data, void *hint) {
  checker_t *c = data;
  checker_close(c);
  checker_refs_release(c);
}

static napi_value wrap_checker(napi_env env, tc_checker *tc) {
  checker_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tc_free(tc);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  atomic_init(&c->tc, tc);
  atomic_init(&c->live, 1);
  atomic_init(&c->refs, 1);
  atomic_init(&c->ops, 0);
  napi_value ext;
  if (napi_create_external(env, c, handle_finalize, NULL, &ext) != napi_ok) {
    tc_free(tc);
    free(c);
    throw_last_error(env, "napi_create_external");
    return NULL;
  }
  NAPI_CALL(env, napi_type_tag_object(env, ext, &CHECKER_TAG));
  return ext;
}

/* ---- blocking calls on libuv's pool ------------------------------------------------------- */

typedef struct work {
  work_kind kind;
  napi_async_work handle;
  napi_ref callback;
  checker_t *checker; /* purges */
  char *arg;          /* config, token or identity id (heap) */
  tc_checker *created;
  char *json;
  uint32_t status;
} work_t;

static void work_execute(napi_env env, void *data) {
  work_t *w = data;
  if (w->kind == WORK_CREATE) {
    w->status = tc_new(w->arg, &w->created, &w->json);
  } else if (w->kind == WORK_PURGE) {
    w->status = tc_purge(checker_tc(w->checker), w->arg);
  } else {
    w->status = tc_purge_identity(checker_tc(w->checker), w->arg);
  }
}

static void work_complete(napi_env env, napi_status status, void *data) {
  work_t *w = data;
  napi_delete_async_work(env, w->handle);
  drop_str(w->arg, NULL);
  if (w->checker != NULL) checker_op_done(w->checker);
  napi_value handle = NULL;
  if (status == napi_cancelled) {
    if (w->created != NULL) tc_free(w->created);
    napi_delete_reference(env, w->callback);
  } else if (w->created == NULL || (handle = wrap_checker(env, w->created)) != NULL) {
    call_back(env, w->callback, w->status, handle, w->json);
  } else {
    napi_delete_reference(env, w->callback); /* wrap_checker freed it; an exception is pending */
  }
  tc_string_free(w->json);
  free(w);
}

/* Queues `kind` with a copy of `arg` (a get_str result, released here in any case). */
static napi_value queue_work(napi_env env, work_kind kind, checker_t *c, char *arg,
                             const char *small, napi_value cb, const char *name) {
  work_t *w = calloc(1, sizeof *w);
  char *copy = strdup(arg);
  drop_str(arg, small);
  napi_value res_name;
  if (w == NULL || copy == NULL) {
    free(w);
    drop_str(copy, NULL);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  w->kind = kind;
  w->arg = copy;
  w->checker = c;
  if (napi_create_reference(env, cb, 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &res_name) != napi_ok ||
      napi_create_async_work(env, NULL, res_name, work_execute, work_complete, w, &w->handle) != napi_ok ||
      napi_queue_async_work(env, w->handle) != napi_ok) {
    throw_last_error(env, "napi_queue_async_work");
    if (w->callback) napi_delete_reference(env, w->callback);
    if (w->handle) napi_delete_async_work(env, w->handle);
    drop_str(w->arg, NULL);
    free(w);
    return NULL;
  }
  if (c != NULL) checker_op_start(c);
  return NULL; /* undefined */
}

/* create(configJson) -> [0, handle] | [status, errorJson];
 * createAsync(configJson, cb) -> undefined | [status, errorJson]; cb(0, handle) | cb(st, json) */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *kind;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, &kind));
  bool async = (uintptr_t)kind == WORK_CREATE;
  if (async && !is_function(env, argv[1])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "createAsync(config, callback)");
    return NULL;
  }
  char small[SMALL_STR], *config = NULL, *err = NULL;
  int rc = get_str(env, argv[0], small, &config);
  if (rc < 0) return NULL;
  if (rc > 0) return bad_str(env, TC_INVALID_CONFIG, rc, "the configuration");
  if (async) return queue_work(env, WORK_CREATE, NULL, config, small, argv[1], "tokenchecker.create");
  tc_checker *tc = NULL;
  tc_status st = tc_new(config, &tc, &err);
  drop_str(config, small);
  napi_value out = st == TC_OK ? wrap_checker(env, tc) : make_answer(env, st, err);
  tc_string_free(err);
  return st == TC_OK && out != NULL ? pair(env, TC_OK, out) : out;
}


/* purge(handle, token, cb) / purgeIdentity(handle, id, cb) */
static napi_value js_purge(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  void *data;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  work_kind kind = (work_kind)(uintptr_t)data;
  if (!is_function(env, argv[2])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "purge(handle, string, callback)");
    return NULL;
  }
  char small[SMALL_STR], *arg = NULL;
  napi_value ans;
  checker_t *c = op_args(env, argv, kind == WORK_PURGE ? "the token" : "the identity id", small, &arg, &ans);
  if (c == NULL) return ans;
  return queue_work(env, kind, c, arg, small, argv[2],
                    kind == WORK_PURGE ? "tokenchecker.purge" : "tokenchecker.purgeIdentity");
}

/* ---- asynchronous library calls ------------------------------------------------------------ */

/* Starts `kind` on the library's runtime: undefined, or [status, json] if it was not started. */
static napi_value start_async(napi_env env, checker_t *c, op_kind kind, const char *token,
                              const char *extra, napi_value cb) {
  addon_t *a = get_addon(env);
  request_t *r = calloc(1, sizeof *r);
  if (r == NULL || a == NULL) {
    free(r);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  r->addon = a;
  r->checker = c;
  r->kind = kind;
  if (napi_create_reference(env, cb, 1, &r->callback) != napi_ok) {
    free(r);
    throw_last_error(env, "napi_create_reference");
    return NULL;
  }
  /* Count the request before starting it: the completion may arrive on another thread at
   * once, but it is delivered on this thread, after this function returns. */
  atomic_fetch_add(&a->refs, 1);
  if (a->pending++ == 0) napi_ref_threadsafe_function(env, a->tsfn);
  checker_op_start(c);
  tc_status st;
  if (kind == OP_CHECK) {
    st = tc_check_async(checker_tc(c), token, on_library_done, r);
  } else if (kind == OP_AUTHORIZE) {
    st = tc_authorize_async(checker_tc(c), token, extra, on_library_done, r);
  } else {
    st = tc_dependent_token_async(checker_tc(c), token, extra, on_library_done, r);
  }
  if (st != TC_OK) {
    checker_op_done(c);
    if (--a->pending == 0) napi_unref_threadsafe_function(env, a->tsfn);
    napi_delete_reference(env, r->callback);
    free(r);
    addon_release(a);
    return make_error_answer(env, st, "the library refused to start the call");
  }
  return NULL; /* undefined */
}

/* check(handle, token, cb), checkAsync(handle, token, cb), authorize(handle, token, requestJson,
 * cb), authorizeAsync(handle, token, requestJson, cb), dependentToken(handle, token, scope, cb):
 *   -> [status, json] when answered synchronously (cache hit, invalid input, not started)
 *   -> undefined when started: cb(status, json) is called exactly once later.
 * check() and authorize() try tc_try_check / tc_try_authorize first (the document path, used
 * for fetch_groups "eager", whose answers carry groups). */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *data;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  op_kind kind = (op_kind)(uintptr_t)data;
  bool try_cache = kind == OP_TRY_CHECK || kind == OP_TRY_AUTHORIZE;
  if (kind == OP_TRY_CHECK) kind = OP_CHECK;
  if (kind == OP_TRY_AUTHORIZE) kind = OP_AUTHORIZE;
  size_t want = kind == OP_CHECK ? 3 : 4;
  if (!is_function(env, argv[want - 1])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "missing arguments or callback");
    return NULL;
  }
  char small[SMALL_STR], small2[SMALL_STR], *token = NULL, *extra = NULL;
  napi_value out;
  checker_t *c = op_args(env, argv, "the token", small, &token, &out);
  if (c == NULL) return out;
  if (kind != OP_CHECK) {
    int rc = get_str(env, argv[2], small2, &extra);
    if (rc != 0) {
      drop_str(token, small);
      if (rc < 0) return NULL;
      return bad_str(env, TC_INVALID_ARGUMENT, rc, kind == OP_AUTHORIZE ? "the request" : "the scope");
    }
  }
  char *json = NULL;
  /* Answered from the in-process cache: no thread hop at all. */
  tc_status st = !try_cache            ? TC_WOULD_BLOCK
                 : kind == OP_CHECK    ? tc_try_check(checker_tc(c), token, &json)
                                       : tc_try_authorize(checker_tc(c), token, extra, &json);
  if (st != TC_WOULD_BLOCK) {
    out = make_answer(env, st, json);
  } else {
    out = start_async(env, c, kind, token, extra, argv[want - 1]);
  }
  tc_string_free(json);
  /* The library copied its inputs. */
  drop_str(token, small);
  drop_str(extra, small2);
  return out;
}

/* ---- templates: the objects built from an answer's fields ----------------------------------- */

static const char IDENTITY_PREFIX[] = "urn:globus:auth:identity:";
#define IDENTITY_PREFIX_LEN (sizeof IDENTITY_PREFIX - 1)

static bool is_ascii(const char *p, size_t n) {
  unsigned char acc = 0;
  for (size_t i = 0; i < n; i++) acc |= (unsigned char)p[i];
  return acc < 0x80;
}

/* A JS string from UTF-8 bytes (ASCII, the usual case, is copied as Latin-1: no decoding). */
static napi_status utf8_value(napi_env env, const char *p, size_t n, napi_value *out) {
  return is_ascii(p, n) ? napi_create_string_latin1(env, p, n, out)
                        : napi_create_string_utf8(env, p, n, out);
}

/* A tc_str as a JS string, null when absent. */
static napi_status str_value(napi_env env, tc_str s, napi_value *out) {
  if (s.ptr == NULL) return napi_get_null(env, out);
  return utf8_value(env, s.ptr, s.len, out);
}

static bool str_eq(tc_str a, tc_str b) {
  return a.ptr != NULL && b.ptr != NULL && a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* "urn:globus:auth:identity:" + id as a JS string. */
static napi_status principal_value(napi_env env, tc_str id, napi_value *out) {
  char small[256];
  size_t n = IDENTITY_PREFIX_LEN + id.len;
  char *buf = n <= sizeof small ? small : malloc(n);
  if (buf == NULL) return napi_generic_failure;
  memcpy(buf, IDENTITY_PREFIX, IDENTITY_PREFIX_LEN);
  memcpy(buf + IDENTITY_PREFIX_LEN, id.ptr, id.len);
  napi_status st = utf8_value(env, buf, n, out);
  if (buf != small) free(buf);
  return st;
}

/* A frozen array of the list's strings. */
static napi_status list_value(napi_env env, tc_str_list l, napi_value *out) {
  napi_status st = napi_create_array_with_length(env, l.len, out);
  for (size_t i = 0; st == napi_ok && i < l.len; i++) {
    napi_value v;
    st = str_value(env, l.items[i], &v);
    if (st == napi_ok) st = napi_set_element(env, *out, (uint32_t)i, v);
  }
  return st == napi_ok ? napi_object_freeze(env, *out) : st;
}

static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * UINT64_C(0x100000001b3);
  return h;
}

/* The value of a string (`list` NULL) or of a list (a frozen array), shared with other answers
 * holding the same one when it is short enough to keep in the intern table; *own gets the bytes
 * to count when it is not kept there. */
static napi_status shared_value(napi_env env, answers_t *s, char kind, const tc_str *one,
                                const tc_str_list *list, napi_value *out, size_t *own) {
  char key[INTERN_MAX_KEY];
  size_t n = 1, chars = 0;
  bool fits = true;
  key[0] = kind;
  size_t count = list != NULL ? list->len : 1;
  for (size_t i = 0; i < count; i++) {
    tc_str item = list != NULL ? list->items[i] : *one;
    chars += item.len;
    uint32_t len = item.ptr == NULL ? UINT32_MAX : (uint32_t)item.len;
    if (!fits || n + sizeof len + item.len > sizeof key) {
      fits = false;
      continue;
    }
    memcpy(key + n, &len, sizeof len);
    memcpy(key + n + sizeof len, item.ptr == NULL ? "" : item.ptr, item.len);
    n += sizeof len + item.len;
  }
  uint64_t h = fits ? fnv1a(key, n) : 0;
  intern_t *e = &s->intern[h % INTERN_SLOTS];
  if (fits && e->len == n && e->hash == h && memcmp(e->key, key, n) == 0 &&
      napi_get_reference_value(env, e->value, out) == napi_ok && *out != NULL) {
    return napi_ok;
  }
  napi_status st = list != NULL ? list_value(env, *list, out) : str_value(env, *one, out);
  if (st != napi_ok) return st;
  char *copy = fits ? malloc(n) : NULL;
  napi_ref ref = NULL;
  if (copy == NULL || napi_create_reference(env, *out, 1, &ref) != napi_ok) {
    free(copy);
    *own += chars;
    return napi_ok;
  }
  if (e->value != NULL) napi_delete_reference(env, e->value);
  free(e->key);
  memcpy(copy, key, n);
  e->key = copy;
  e->len = (uint32_t)n;
  e->hash = h;
  e->value = ref;
  return napi_ok;
}

enum { T_SUB, T_EFFECTIVE, T_IDENTITIES, T_USERNAME, T_NAME, T_EMAIL, T_CLIENT_ID, T_SCOPES, T_AUD,
       T_PRINCIPALS, T_LEN };

/* The template of an answer: index.js's maker(sub, effectiveIdentity, identities, username,
 * name, email, clientId, scopes, aud, principals), exp/nbf/iat in answerOut; a frozen object
 * whose arrays are frozen (the maker freezes identities and principals, and makes them when
 * they are undefined: the identity set is [sub]). *own gets the bytes the memo counts for it
 * (the strings it holds on its own). NULL with an exception pending on failure. */
static napi_value make_template(napi_env env, answers_t *s, double *out, const tc_fields *f,
                                size_t *own) {
  napi_value v[T_LEN] = {NULL}, maker, recv, result = NULL;
  napi_status st = napi_ok;
  size_t bytes = 0;
#define TRY(call)              \
  do {                         \
    if (st == napi_ok) st = (call); \
  } while (0)
  TRY(str_value(env, f->sub, &v[T_SUB]));
  bytes += f->sub.len;
  if (f->sub.ptr != NULL) {
    TRY(principal_value(env, f->sub, &v[T_EFFECTIVE]));
    bytes += IDENTITY_PREFIX_LEN + f->sub.len;
  } else {
    TRY(napi_get_null(env, &v[T_EFFECTIVE]));
  }
  size_t n = f->identities.len;
  if (n == 0) {
    TRY(napi_get_reference_value(env, s->empty_ref, &v[T_IDENTITIES]));
    v[T_PRINCIPALS] = v[T_IDENTITIES];
  } else if (n == 1 && str_eq(f->identities.items[0], f->sub)) {
    /* the usual identity set, [sub]: the maker makes [sub] and [effectiveIdentity] */
    TRY(napi_get_undefined(env, &v[T_IDENTITIES]));
    v[T_PRINCIPALS] = v[T_IDENTITIES];
  } else {
    TRY(napi_create_array_with_length(env, n, &v[T_IDENTITIES]));
    TRY(napi_create_array_with_length(env, n, &v[T_PRINCIPALS]));
    for (size_t i = 0; st == napi_ok && i < n; i++) {
      tc_str id = f->identities.items[i];
      napi_value idv, pv;
      if (str_eq(id, f->sub)) {
        idv = v[T_SUB];
        pv = v[T_EFFECTIVE];
      } else {
        TRY(str_value(env, id, &idv));
        TRY(id.ptr != NULL ? principal_value(env, id, &pv) : napi_get_null(env, &pv));
        bytes += id.len + IDENTITY_PREFIX_LEN + id.len;
      }
      TRY(napi_set_element(env, v[T_IDENTITIES], (uint32_t)i, idv));
      TRY(napi_set_element(env, v[T_PRINCIPALS], (uint32_t)i, pv));
    }
  }
  TRY(str_value(env, f->username, &v[T_USERNAME]));
  bytes += f->username.len;
  TRY(str_value(env, f->name, &v[T_NAME]));
  bytes += f->name.len;
  if (str_eq(f->email, f->username)) {
    v[T_EMAIL] = v[T_USERNAME];
  } else {
    TRY(str_value(env, f->email, &v[T_EMAIL]));
    bytes += f->email.len;
  }
  if (f->client_id.ptr != NULL) {
    TRY(shared_value(env, s, 'c', &f->client_id, NULL, &v[T_CLIENT_ID], &bytes));
  } else {
    TRY(napi_get_null(env, &v[T_CLIENT_ID]));
  }
  TRY(shared_value(env, s, 's', NULL, &f->scopes, &v[T_SCOPES], &bytes));
  TRY(shared_value(env, s, 'a', NULL, &f->aud, &v[T_AUD], &bytes));
#undef TRY
  out[OUT_EXP] = f->has_exp ? (double)f->exp : NAN;
  out[OUT_NBF] = f->has_nbf ? (double)f->nbf : NAN;
  out[OUT_IAT] = f->has_iat ? (double)f->iat : NAN;
  if (st != napi_ok || napi_get_reference_value(env, s->maker_ref, &maker) != napi_ok ||
      napi_get_undefined(env, &recv) != napi_ok ||
      napi_call_function(env, recv, maker, T_LEN, v, &result) != napi_ok) {
    throw_last_error(env, "making an answer's object");
    return NULL;
  }
  *own = bytes;
  return result;
}

/* Keeps a copy of `value` (the template of answer `id`, counting `bytes`) in the memo, if
 * admitted, and returns that copy (NULL when not kept).
 *
 * The memo keeps index.js's copy (keepTemplate), not the template itself: V8 pretenures an
 * allocation site whose objects survive, so keeping templates made by makeTemplate would have
 * every template, the 15 in 16 refused ones too, made in the old generation once the memo is
 * full (measured: 100,000 users in turn cost 2.2 µs per check against 1.7 µs with no memo). */
static napi_value memo_admit(napi_env env, answers_t *s, uint64_t id, napi_value value, uint64_t bytes) {
  memo_t *m = &s->memo;
  if (bytes > memo_limit || bytes > UINT32_MAX) {
    m->refused++;
    return NULL;
  }
  /* Decided before touching any JavaScript value: a refusal costs nothing else. */
  bool fits = memo_budget_take(bytes);
  if (!fits && memo_random(m) % 16 != 0) {
    /* Full: admit one time in 16, at random, making room from the oldest entries. */
    m->refused++;
    return NULL;
  }
  napi_value slots, keeper, recv;
  if (napi_get_reference_value(env, s->slots_ref, &slots) != napi_ok || slots == NULL ||
      napi_get_reference_value(env, s->keeper_ref, &keeper) != napi_ok || keeper == NULL ||
      napi_get_undefined(env, &recv) != napi_ok ||
      napi_call_function(env, recv, keeper, 1, &value, &value) != napi_ok) {
    /* (an exception may be pending: the caller's return surfaces it) */
    if (fits) atomic_fetch_sub(&memo_used, bytes);
    return NULL;
  }
  if (!fits) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    for (;;) {
      if (m->fifo_len == 0) {
        m->refused++;
        return NULL;
      }
      uint32_t old = m->fifo[m->fifo_head];
      m->fifo_head = (m->fifo_head + 1) % m->slots_cap;
      m->fifo_len--;
      memo_del_key(m, m->slot_id[old]);
      m->slot_id[old] = 0;
      m->bytes -= m->slot_bytes[old];
      atomic_fetch_sub(&memo_used, m->slot_bytes[old]);
      m->free_slots[m->nfree++] = old;
      napi_set_element(env, slots, old, undefined);
      m->evictions++;
      if (memo_budget_take(bytes)) break;
    }
  }
  if (!memo_reserve_key(m) || !memo_reserve_slot(m)) {
    atomic_fetch_sub(&memo_used, bytes);
    m->refused++;
    return NULL;
  }
  uint32_t slot = m->nfree > 0 ? m->free_slots[--m->nfree] : m->nslots++;
  if (napi_set_element(env, slots, slot, value) != napi_ok) {
    /* (an exception may be pending: the caller's return surfaces it) */
    if (slot + 1 == m->nslots) m->nslots--;
    else m->free_slots[m->nfree++] = slot;
    atomic_fetch_sub(&memo_used, bytes);
    return NULL;
  }
  memo_put_key(m, id, slot);
  m->count++;
  m->slot_id[slot] = id;
  m->slot_bytes[slot] = (uint32_t)bytes;
  m->fifo[(m->fifo_head + m->fifo_len) % m->slots_cap] = slot;
  m->fifo_len++;
  m->bytes += bytes;
  return value;
}

/* Empties this environment's memo (its slots array too); counters stay unless `reset`. */
static void memo_clear(napi_env env, answers_t *s, bool reset) {
  memo_t *m = &s->memo;
  uint64_t hits = m->hits, misses = m->misses, evictions = m->evictions, refused = m->refused;
  memo_free(m);
  if (!reset) {
    m->hits = hits;
    m->misses = misses;
    m->evictions = evictions;
    m->refused = refused;
  }
  napi_value slots, zero;
  if (s->slots_ref != NULL && napi_get_reference_value(env, s->slots_ref, &slots) == napi_ok &&
      slots != NULL && napi_create_uint32(env, 0, &zero) == napi_ok) {
    napi_set_named_property(env, slots, "length", zero);
  }
}

/* What a call on the answer path returns for the library's answer (and releases it), `row` its
 * four numbers (answerOut itself for a single call, a row of the batch's array for answerMany):
 *   TC_OK, a memo hit   -> undefined, row[OUT_SLOT] = the template's slot (>= 0)
 *   TC_OK, a memo miss  -> the template, made now (and kept when admitted); row[OUT_SLOT] = -2
 *   TC_WOULD_BLOCK      -> undefined, row[OUT_SLOT] = -1 (start the async call)
 *   otherwise           -> [status, errorJson], row[OUT_SLOT] = -3
 * row[OUT_SOURCE] and row[OUT_AGE] are set for TC_OK; answerOut[OUT_ID] too. */
static napi_value answer_result(napi_env env, addon_t *a, double *row, tc_status st,
                                const tc_answer *answer, const tc_answer_meta *meta, char *err) {
  double *out = a->out;
  napi_value result = NULL;
  if (st == TC_OK) {
    answers_t *s = &a->answers;
    uint64_t id = tc_answer_id(answer);
    out[OUT_ID] = (double)id;
    row[OUT_SOURCE] = source_index(s, meta->source);
    row[OUT_AGE] = (double)meta->age_ms;
    uint32_t slot = memo_find(&s->memo, id);
    if (slot != NO_SLOT) {
      s->memo.hits++;
      row[OUT_SLOT] = slot;
    } else {
      s->memo.misses++;
      row[OUT_SLOT] = -2;
      size_t own = 0;
      const tc_fields *f = tc_answer_fields(answer);
      if (f == NULL) {
        napi_throw_error(env, "TC_ADDON", "the library gave no fields for an answer");
      } else if ((result = make_template(env, s, out, f, &own)) != NULL && memo_limit > 0) {
        napi_value kept = memo_admit(env, s, id, result, (uint64_t)own + MEMO_ENTRY_OVERHEAD);
        if (kept != NULL) result = kept; /* this call and the memo's hits share its arrays */
      }
    }
  } else if (st == TC_WOULD_BLOCK) {
    row[OUT_SLOT] = -1;
  } else {
    row[OUT_SLOT] = -3;
    result = make_answer(env, st, err);
  }
  tc_answer_free(answer);
  tc_string_free(err);
  return result;
}

/* ---- compiled policies ----------------------------------------------------------------------- */

static const napi_type_tag POLICY_TAG = {0x746f6b656e636865ULL, 0x636b2d706f6c6963ULL};

typedef struct policy {
  tc_policy *p; /* NULL once closed */
} policy_t;

static void policy_finalize(napi_env env, void *data, void *hint) {
  policy_t *p = data;
  tc_policy_free(p->p);
  free(p);
}

/* policyNew(requestJson) -> [0, handle, principals (a frozen array of the library's strings)] |
 * [status, errorJson] */
static napi_value js_policy_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char small[SMALL_STR], *request = NULL, *err = NULL;
  int rc = get_str(env, argv[0], small, &request);
  if (rc < 0) return NULL;
  if (rc > 0) return bad_str(env, TC_INVALID_ARGUMENT, rc, "the authorization request");
  tc_policy *tp = NULL;
  tc_status st = tc_policy_new(request, &tp, &err);
  drop_str(request, small);
  if (st != TC_OK) {
    napi_value ans = make_answer(env, st, err);
    tc_string_free(err);
    return ans;
  }
  policy_t *p = malloc(sizeof *p);
  napi_value ext, principals, arr, status;
  if (p == NULL) {
    tc_policy_free(tp);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  p->p = tp;
  if (napi_create_external(env, p, policy_finalize, NULL, &ext) != napi_ok) {
    tc_policy_free(tp);
    free(p);
    throw_last_error(env, "napi_create_external");
    return NULL;
  }
  NAPI_CALL(env, napi_type_tag_object(env, ext, &POLICY_TAG));
  size_t n = tc_policy_len(tp);
  NAPI_CALL(env, napi_create_array_with_length(env, n, &principals));
  for (size_t i = 0; i < n; i++) {
    size_t len = 0;
    const char *s = tc_policy_principal(tp, i, &len);
    napi_value v;
    NAPI_CALL(env, s != NULL ? utf8_value(env, s, len, &v) : napi_get_null(env, &v));
    NAPI_CALL(env, napi_set_element(env, principals, (uint32_t)i, v));
  }
  NAPI_CALL(env, napi_object_freeze(env, principals));
  NAPI_CALL(env, napi_create_array_with_length(env, 3, &arr));
  NAPI_CALL(env, napi_create_uint32(env, TC_OK, &status));
  NAPI_CALL(env, napi_set_element(env, arr, 0, status));
  NAPI_CALL(env, napi_set_element(env, arr, 1, ext));
  NAPI_CALL(env, napi_set_element(env, arr, 2, principals));
  return arr;
}

static policy_t *unwrap_policy(napi_env env, napi_value handle) {
  bool ok = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, handle, &POLICY_TAG, &ok) != napi_ok || !ok ||
      napi_get_value_external(env, handle, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "not a tokenchecker policy handle");
    return NULL;
  }
  return p;
}

/* policyClose(handle): releases the compiled policy now (idempotent; nothing else uses it: every
 * use is a synchronous call on this thread). */
static napi_value js_policy_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  policy_t *p = unwrap_policy(env, argv[0]);
  if (p == NULL) return NULL;
  tc_policy_free(p->p);
  p->p = NULL;
  return NULL;
}

/* ---- the answer path: check() and authorize() --------------------------------------------- */

/* checkAnswer(handle, token): tc_try_check_answer; see answer_result. */
static napi_value js_check_answer(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  addon_t *a = NULL;
  /* (missing arguments are undefined) */
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a));
  char small[SMALL_STR], *token = NULL;
  napi_value ans;
  checker_t *c = op_args(env, argv, "the token", small, &token, &ans);
  if (c == NULL) return ans;
  const tc_answer *answer = NULL;
  tc_answer_meta meta = {NULL, 0};
  char *err = NULL;
  tc_status st = tc_try_check_answer(checker_tc(c), token, &answer, &meta, &err);
  drop_str(token, small);
  return answer_result(env, a, a->out, st, answer, &meta, err);
}

/* authorizeAnswer(handle, policy, token): tc_try_authorize_answer with a compiled policy; see
 * answer_result; answerOut[OUT_MATCHED] = the index of the principal that matched. */
static napi_value js_authorize_answer(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  addon_t *a = NULL;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a));
  policy_t *p = unwrap_policy(env, argv[1]);
  if (p == NULL) return NULL;
  napi_value args[2] = {argv[0], argv[2]}, ans;
  char small[SMALL_STR], *token = NULL;
  checker_t *c = op_args(env, args, "the token", small, &token, &ans);
  if (c == NULL) return ans;
  if (p->p == NULL) {
    drop_str(token, small);
    return make_error_answer(env, TC_INVALID_ARGUMENT, "the policy is closed");
  }
  const tc_answer *answer = NULL;
  tc_answer_meta meta = {NULL, 0};
  size_t matched = TC_NO_MATCH;
  char *err = NULL;
  tc_status st = tc_try_authorize_answer(checker_tc(c), token, p->p, &answer, &meta, &matched, &err);
  drop_str(token, small);
  a->out[OUT_MATCHED] = matched == TC_NO_MATCH ? -1 : (double)matched;
  return answer_result(env, a, a->out, st, answer, &meta, err);
}

/* answerMany(handle, policy | null, tokens, start, count, rows, results): the answer path for a
 * batch of tokens in one native call (checkMany / authorizeMany): tc_try_check_answer, or
 * tc_try_authorize_answer with the policy, for tokens[start .. start + count) (an array). The
 * numbers of the i-th go to rows[4 i ..] (a Float64Array of at least 4 count: slot, source, age,
 * matched, as answerOut for one call) and its value, when there is one (a template made now, or
 * [status, json]), to results[start + i]. A closed checker or policy: the answer of a single
 * call for every token. */
static napi_value js_answer_many(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  addon_t *a = NULL;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a));
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  napi_valuetype pt;
  NAPI_CALL(env, napi_typeof(env, argv[1], &pt));
  policy_t *p = NULL;
  if (pt != napi_null && (p = unwrap_policy(env, argv[1])) == NULL) return NULL;
  uint32_t len = 0, start = 0, n = 0;
  bool is_array = false;
  napi_typedarray_type tt;
  size_t rows_len = 0;
  void *data = NULL;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &len) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &start) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &n) != napi_ok || start > len || n > len - start ||
      napi_is_array(env, argv[6], &is_array) != napi_ok || !is_array ||
      napi_get_typedarray_info(env, argv[5], &tt, &rows_len, &data, NULL, NULL) != napi_ok ||
      tt != napi_float64_array || rows_len < (size_t)n * 4) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT",
                          "answerMany(handle, policy, tokens, start, count, rows, results)");
    return NULL;
  }
  double *rows = data;
  for (uint32_t i = 0; i < n; i++) {
    double *row = rows + (size_t)i * 4;
    napi_value tok, ans = NULL;
    NAPI_CALL(env, napi_get_element(env, argv[2], start + i, &tok));
    if (c->closed) {
      ans = make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");
    } else if (p != NULL && p->p == NULL) {
      ans = make_error_answer(env, TC_INVALID_ARGUMENT, "the policy is closed");
    } else {
      char small[SMALL_STR], *token = NULL;
      int rc = get_str(env, tok, small, &token);
      if (rc < 0) return NULL;
      if (rc > 0) {
        ans = bad_str(env, TC_INVALID_ARGUMENT, rc, "the token");
      } else {
        const tc_answer *answer = NULL;
        tc_answer_meta meta = {NULL, 0};
        size_t matched = TC_NO_MATCH;
        char *err = NULL;
        tc_status st = p == NULL
                           ? tc_try_check_answer(checker_tc(c), token, &answer, &meta, &err)
                           : tc_try_authorize_answer(checker_tc(c), token, p->p, &answer, &meta, &matched, &err);
        drop_str(token, small);
        row[OUT_MATCHED] = matched == TC_NO_MATCH ? -1 : (double)matched;
        ans = answer_result(env, a, row, st, answer, &meta, err);
        if (ans == NULL) {
          bool pending = false;
          napi_is_exception_pending(env, &pending);
          if (pending) return NULL;
          continue;
        }
      }
    }
    if (ans == NULL) return NULL;
    if (row[OUT_SLOT] != -2) row[OUT_SLOT] = -3;
    NAPI_CALL(env, napi_set_element(env, argv[6], start + i, ans));
  }
  return NULL;
}

/* probe(handle, policy | null, token) -> the status of tc_try_check_answer (or of
 * tc_try_authorize_answer with the policy), the answer released at once: the library and N-API
 * alone, for the benchmark's floor (no memo, no object). */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype pt;
  NAPI_CALL(env, napi_typeof(env, argv[1], &pt));
  policy_t *p = NULL;
  if (pt != napi_null && (p = unwrap_policy(env, argv[1])) == NULL) return NULL;
  napi_value args[2] = {argv[0], argv[2]}, ans;
  char small[SMALL_STR], *token = NULL;
  checker_t *c = op_args(env, args, "the token", small, &token, &ans);
  if (c == NULL) return ans;
  const tc_answer *answer = NULL;
  size_t matched;
  tc_status st = p == NULL || p->p == NULL
                     ? tc_try_check_answer(checker_tc(c), token, &answer, NULL, NULL)
                     : tc_try_authorize_answer(checker_tc(c), token, p->p, &answer, NULL, &matched, NULL);
  drop_str(token, small);
  tc_answer_free(answer);
  NAPI_CALL(env, napi_create_uint32(env, st, &out));
  return out;
}

/* noop(handle, token) -> undefined: the cost of a native call with checkAnswer's arguments,
 * for the benchmark's comparison. */
static napi_value js_noop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return NULL;
}

/* setup(sources, slots, maker, keeper): index.js's part of the answer path, once per
 * environment: the library's cache sources (answerOut[OUT_SOURCE] indexes them), the array
 * holding the memo's templates, the function making a template and the one copying a template
 * the memo keeps (see memo_admit). */
static napi_value js_setup(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], empty;
  addon_t *a = NULL;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a));
  answers_t *s = &a->answers;
  bool is_array = false;
  uint32_t n = 0;
  if (s->maker_ref != NULL || argc < 4 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &n) != napi_ok || n > MAX_SOURCES ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || !is_function(env, argv[2]) ||
      !is_function(env, argv[3])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "setup(sources, slots, maker, keeper), once");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    char buf[64];
    size_t len = 0;
    NAPI_CALL(env, napi_get_element(env, argv[0], i, &v));
    NAPI_CALL(env, napi_get_value_string_utf8(env, v, buf, sizeof buf, &len));
    if ((s->sources[i] = strdup(buf)) == NULL) {
      napi_throw_error(env, "TC_ADDON", "out of memory");
      return NULL;
    }
    s->nsources = i + 1;
  }
  NAPI_CALL(env, napi_create_array(env, &empty));
  NAPI_CALL(env, napi_object_freeze(env, empty));
  NAPI_CALL(env, napi_create_reference(env, empty, 1, &s->empty_ref));
  NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &s->slots_ref));
  NAPI_CALL(env, napi_create_reference(env, argv[2], 1, &s->maker_ref));
  NAPI_CALL(env, napi_create_reference(env, argv[3], 1, &s->keeper_ref));
  return NULL;
}

static napi_value set_number(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  NAPI_CALL(env, napi_create_double(env, v, &n));
  NAPI_CALL(env, napi_set_named_property(env, obj, key, n));
  return obj;
}

/* memoStats() -> {limitBytes, limitValid, processBytes, bytes, entries, hits, misses,
 * evictions, refused, entryOverhead}; memoClear(resetCounters) empties this environment's. */
static napi_value js_memo_stats(napi_env env, napi_callback_info info) {
  addon_t *a = NULL;
  napi_value o, valid;
  NAPI_CALL(env, napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&a));
  const memo_t *m = &a->answers.memo;
  NAPI_CALL(env, napi_create_object(env, &o));
  NAPI_CALL(env, napi_get_boolean(env, memo_limit_ok, &valid));
  NAPI_CALL(env, napi_set_named_property(env, o, "limitValid", valid));
  const struct { const char *key; double v; } nums[] = {
      {"limitBytes", (double)memo_limit},       {"processBytes", (double)atomic_load(&memo_used)},
      {"bytes", (double)m->bytes},              {"entries", (double)m->count},
      {"hits", (double)m->hits},                {"misses", (double)m->misses},
      {"evictions", (double)m->evictions},      {"refused", (double)m->refused},
      {"entryOverhead", MEMO_ENTRY_OVERHEAD},
  };
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    if (set_number(env, o, nums[i].key, nums[i].v) == NULL) return NULL;
  }
  return o;
}

static napi_value js_memo_clear(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  addon_t *a = NULL;
  bool reset = false;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&a));
  if (argc >= 1) napi_get_value_bool(env, argv[0], &reset);
  memo_clear(env, &a->answers, reset);
  return NULL;
}

/* ---- library and checker info -------------------------------------------------------------- */

/* libraryInfo() -> the JSON of tc_library_info (statuses, sources, config keys, …) */
static napi_value js_library_info(napi_env env, napi_callback_info info) {
  char *json = NULL;
  tc_status st = tc_library_info(&json);
  napi_value out = NULL;
  if (st != TC_OK || json == NULL) {
    napi_throw_error(env, "TC_ADDON", "tc_library_info failed");
  } else if (napi_create_string_utf8(env, json, NAPI_AUTO_LENGTH, &out) != napi_ok) {
    throw_last_error(env, "napi_create_string_utf8");
  }
  tc_string_free(json);
  return out;
}

/* checkerInfo(handle) -> [status, json] of tc_checker_info (the effective configuration) */
static napi_value js_checker_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  if (c->closed) return make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");
  char *json = NULL;
  tc_status st = tc_checker_info(checker_tc(c), &json);
  napi_value ans = make_answer(env, st, json);
  tc_string_free(json);
  return ans;
}

/* ---- the rest ---------------------------------------------------------------------------- */

/* close(handle): idempotent. tc_free happens once nothing is in flight. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  checker_close(c);
  return NULL; /* undefined */
}

/* inFlight(handle?) -> operations in flight for the checker, or async requests of the addon */
static napi_value js_in_flight(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t n;
  if (argc >= 1) {
    checker_t *c = unwrap_checker(env, argv[0]);
    if (c == NULL) return NULL;
    n = atomic_load(&c->ops);
  } else {
    addon_t *a = get_addon(env);
    n = a ? a->pending : 0;
  }
  NAPI_CALL(env, napi_create_uint32(env, n, &out));
  return out;
}

/* isFreed(handle) -> whether tc_free has run (for tests) */
static napi_value js_is_freed(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL}, out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  NAPI_CALL(env, napi_get_boolean(env, checker_tc(c) == NULL, &out));
  return out;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  char *json = NULL;
  tc_status st = tc_stats(&json);
  napi_value ans = make_answer(env, st, json);
  tc_string_free(json);
  return ans;
}

static napi_value js_version(napi_env env, napi_callback_info info) {
  napi_value out;
  NAPI_CALL(env, napi_create_string_utf8(env, tc_version(), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_status_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t st = 0;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &st) != napi_ok) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "statusName(number)");
    return NULL;
  }
  NAPI_CALL(env, napi_create_string_utf8(env, tc_status_name(st), NAPI_AUTO_LENGTH, &out));
  return out;
}

/* Keeps this shared object mapped for the life of the process: library runtime threads may
 * still call on_library_done after an environment (a worker) that loaded it is gone. */
static void pin_self(void) {
  Dl_info dl;
  if (dladdr((void *)&pin_self, &dl) && dl.dli_fname != NULL) {
    void *h = dlopen(dl.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    (void)h; /* the reference is kept on purpose */
  }
}

NAPI_MODULE_INIT() {
  /* Refuse a library whose C ABI differs from the header this addon was compiled with (a stale
   * libtokenchecker.so found first on the library path, say). */
  if (tc_abi_version() != TOKENCHECKER_ABI_VERSION) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "the tokenchecker library %s has C ABI %u but this addon was built for ABI %u; "
             "rebuild the addon (npm run build) against the library's header",
             tc_version(), (unsigned)tc_abi_version(), (unsigned)TOKENCHECKER_ABI_VERSION);
    napi_throw_error(env, "TC_ABI_MISMATCH", msg);
    return NULL;
  }
  pin_self();

  addon_t *a = calloc(1, sizeof *a);
  if (a == NULL) {
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  atomic_init(&a->refs, 2); /* the environment and the threadsafe function */
  pthread_mutex_init(&a->mu, NULL);
  pthread_once(&memo_once, memo_read_env);
  a->answers.memo.rng = ((uint64_t)(uintptr_t)a ^ (uint64_t)time(NULL)) | 1;

  napi_value name, buffer, out;
  NAPI_CALL(env, napi_create_string_utf8(env, "tokenchecker.completions", NAPI_AUTO_LENGTH, &name));
  napi_status st = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, a, tsfn_finalize,
                                                   a, call_js, &a->tsfn);
  if (st != napi_ok) {
    pthread_mutex_destroy(&a->mu);
    free(a);
    throw_last_error(env, "napi_create_threadsafe_function");
    return NULL;
  }
  /* Idle until something is in flight. */
  NAPI_CALL(env, napi_unref_threadsafe_function(env, a->tsfn));
  NAPI_CALL(env, napi_set_instance_data(env, a, addon_finalize, NULL));
  /* answerOut: its backing store is not moved by the GC; the reference keeps it alive. */
  NAPI_CALL(env, napi_create_arraybuffer(env, OUT_LEN * sizeof(double), (void **)&a->out, &buffer));
  NAPI_CALL(env, napi_create_typedarray(env, napi_float64_array, OUT_LEN, buffer, 0, &out));
  NAPI_CALL(env, napi_create_reference(env, out, 1, &a->out_ref));

#define FN(name, fn, data) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, data}
#define OP(name, fn, kind) FN(name, fn, (void *)(uintptr_t)(kind))
  napi_property_descriptor props[] = {
      OP("create", js_create, CREATE_SYNC),
      OP("createAsync", js_create, WORK_CREATE),
      OP("check", js_start, OP_TRY_CHECK),
      OP("checkAsync", js_start, OP_CHECK),
      OP("authorize", js_start, OP_TRY_AUTHORIZE),
      OP("authorizeAsync", js_start, OP_AUTHORIZE),
      OP("dependentToken", js_start, OP_DEPENDENT),
      OP("purge", js_purge, WORK_PURGE),
      OP("purgeIdentity", js_purge, WORK_PURGE_IDENTITY),
      FN("checkAnswer", js_check_answer, a),
      FN("authorizeAnswer", js_authorize_answer, a),
      FN("answerMany", js_answer_many, a),
      FN("policyNew", js_policy_new, a),
      FN("policyClose", js_policy_close, a),
      FN("setup", js_setup, a),
      FN("memoStats", js_memo_stats, a),
      FN("memoClear", js_memo_clear, a),
      FN("libraryInfo", js_library_info, a),
      FN("checkerInfo", js_checker_info, a),
      FN("noop", js_noop, a),
      FN("probe", js_probe, a),
      FN("close", js_close, a),
      FN("inFlight", js_in_flight, a),
      FN("isFreed", js_is_freed, a),
      FN("stats", js_stats, a),
      FN("version", js_version, a),
      FN("statusName", js_status_name, a),
      {"answerOut", NULL, NULL, NULL, NULL, out, napi_enumerable, NULL},
  };
#undef FN
#undef OP
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
