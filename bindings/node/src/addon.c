/*
 * Node-API (C, NAPI_VERSION 8) addon over the tokenchecker C ABI.
 *
 * Design
 * ------
 * - Every asynchronous call (tc_check_async, tc_authorize_async, tc_dependent_token_async)
 *   runs on the library's own tokio runtime; nothing here occupies libuv's thread pool while
 *   waiting on the network.
 * - Completions come back to JavaScript through ONE napi_threadsafe_function per addon
 *   instance (per Node environment: the main thread and each worker get their own). It is
 *   unref'd while nothing is in flight (the process may exit) and ref'd while something is.
 * - Checks try tc_try_check first: a cached answer is returned synchronously, without ever
 *   touching the runtime (checkCached; the older check() does the same, then starts the call).
 * - Result memo (checkCached only): the library renders the same bytes for the same cached
 *   entry, up to the `"cache":{"source":…,"age_ms":…}` member at the end. A bounded hash table
 *   per addon instance maps those leading bytes (hashed, then compared in full on a hit) to a
 *   napi_ref of the frozen object JavaScript decoded from them once, so a hit costs no JSON
 *   string, no JSON.parse and no object building here; the per-call source and age go back
 *   through a Float64Array. CLOCK replacement; once full, a miss is admitted one time in 16, so
 *   an oversized working set does not churn. Keys and values are result documents, which never
 *   contain the token; the token itself is only ever in a stack/heap buffer zeroed after use.
 * - The JavaScript layer (index.js) owns promises and object shapes: the native functions
 *   here return `[status, json]` for answers known synchronously, or `undefined` once the
 *   work was started, in which case `callback(status, json)` is called later, exactly once.
 *
 * Lifetimes
 * ---------
 * - addon_t: shared with the library's runtime threads, so it is reference counted
 *   atomically: one reference for the environment (dropped by the instance-data finalizer),
 *   one for the threadsafe function (dropped by its finalizer), one per request in flight.
 *   Its mutex makes "is the threadsafe function still there?" and the call to it one atomic
 *   step, so a completion racing with environment teardown never touches a freed function.
 * - checker_t: two atomic counts. `live` = 1 until close() (or the handle's collection) + one
 *   per operation in flight: tc_free runs when it reaches 0, i.e. once the checker is closed AND
 *   nothing is in flight. `refs` = 1 for the JavaScript handle + one per operation in flight:
 *   the struct is freed when it reaches 0. Operations normally finish on the main thread; when
 *   a worker's environment is torn down first, the library thread that brings the answer drops
 *   it and releases them itself (hence atomics), so nothing leaks.
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
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
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

/* ---- per-environment state ------------------------------------------------------------------ */

/* One memoised result: the leading bytes of a result document (everything before its
 * `,"cache":` member) and the frozen object decoded from them. */
typedef struct memo_entry {
  uint64_t hash;
  char *bytes; /* a copy of the document's leading bytes (never the token); NULL = free */
  size_t len;
  napi_ref value;  /* strong reference to the frozen decoded object */
  bool referenced; /* CLOCK bit: used since the hand last passed */
} memo_entry_t;

#define MEMO_DEFAULT_ENTRIES 4096u
#define MEMO_MAX_ENTRIES (1u << 20)
#define MEMO_DEFAULT_MAX_BYTES (8u * 1024u) /* documents longer than this are not memoised */

/* Main thread only. Fully associative: `entries` (max_entries of them, allocated on first use)
 * indexed by an open-addressing table (linear probing, at most half full) of entry numbers + 1;
 * CLOCK (second chance) picks the entry to replace once all are in use. */
typedef struct memo {
  memo_entry_t *entries;
  uint32_t *index;
  uint32_t index_mask;
  uint32_t used_top; /* entries[0, used_top) have been handed out since the last clear */
  uint32_t hand;     /* CLOCK hand */
  uint32_t max_entries; /* configured bound; 0 disables the memo */
  uint32_t max_bytes;   /* longest document memoised */
  uint32_t count;       /* entries holding a document */
  uint64_t seed;
  uint64_t rng; /* xorshift state for admission once full */
  uint64_t hits, misses, evictions, bytes;
} memo_t;

typedef struct addon {
  atomic_int refs;               /* env + tsfn + requests in flight */
  pthread_mutex_t mu;            /* guards tsfn against its own finalization */
  napi_threadsafe_function tsfn; /* NULL once finalized */
  uint32_t pending;              /* main thread only: async requests not yet delivered */
  memo_t memo;                   /* main thread only; emptied when the environment goes */
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
  if (atomic_fetch_sub(&c->live, 1) == 1) {
    tc_free(atomic_exchange(&c->tc, NULL));
  }
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

typedef enum { OP_CHECK, OP_AUTHORIZE, OP_DEPENDENT } op_kind;

/* One asynchronous library call in flight. */
typedef struct request {
  addon_t *addon;
  checker_t *checker;
  napi_ref callback; /* main thread only */
  op_kind kind;
  uint32_t status;
  char *json;
} request_t;

/* ---- the result memo (main thread only) ---------------------------------------------------- */

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/* A fast keyed hash of the document bytes: four independent lanes of 8 bytes. Collisions only
 * cost a memcmp or an eviction (every hit is confirmed by comparing the bytes in full). */
static uint64_t memo_hash(const unsigned char *p, size_t n, uint64_t seed) {
  const uint64_t k = 0x9e3779b97f4a7c15ULL;
  uint64_t a = seed ^ n, b = seed + k, c = seed ^ (k >> 7), d = ~seed;
  while (n >= 32) {
    uint64_t w[4];
    memcpy(w, p, 32);
    a = (a ^ w[0]) * k;
    b = (b ^ w[1]) * k;
    c = (c ^ w[2]) * k;
    d = (d ^ w[3]) * k;
    a ^= a >> 29;
    b ^= b >> 29;
    c ^= c >> 29;
    d ^= d >> 29;
    p += 32;
    n -= 32;
  }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    a = (a ^ w) * k;
    a ^= a >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  memcpy(&tail, p, n);
  a = (a ^ tail ^ ((uint64_t)n << 56)) * k;
  return mix64(a ^ mix64(b) ^ (mix64(c) >> 1) ^ (mix64(d) << 1));
}

/* The index slot of an entry (NULL if absent, which would be a bug: never loop forever). */
static uint32_t *memo_slot_of(memo_t *m, uint32_t entry_no) {
  uint32_t i = (uint32_t)m->entries[entry_no].hash & m->index_mask;
  for (uint32_t probes = 0; probes <= m->index_mask; probes++, i = (i + 1) & m->index_mask) {
    if (m->index[i] == entry_no + 1) return &m->index[i];
    if (m->index[i] == 0) break;
  }
  return NULL;
}

/* Removes an entry from the index (backward-shift deletion keeps probe chains intact). */
static void memo_unindex(memo_t *m, uint32_t entry_no) {
  uint32_t mask = m->index_mask;
  uint32_t *slot = memo_slot_of(m, entry_no);
  if (slot == NULL) return;
  uint32_t hole = (uint32_t)(slot - m->index);
  m->index[hole] = 0;
  for (uint32_t j = (hole + 1) & mask; m->index[j] != 0; j = (j + 1) & mask) {
    uint32_t home = (uint32_t)m->entries[m->index[j] - 1].hash & mask;
    /* move index[j] into the hole unless its home lies cyclically in (hole, j] */
    bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!stays) {
      m->index[hole] = m->index[j];
      m->index[j] = 0;
      hole = j;
    }
  }
}

static void memo_release_entry(napi_env env, memo_t *m, memo_entry_t *e) {
  if (env != NULL && e->value != NULL) napi_delete_reference(env, e->value);
  free(e->bytes);
  m->bytes -= e->len;
  m->count--;
  memset(e, 0, sizeof *e);
}

static void memo_drop_entry(napi_env env, memo_t *m, memo_entry_t *e) {
  if (e->bytes == NULL) return;
  memo_unindex(m, (uint32_t)(e - m->entries));
  memo_release_entry(env, m, e);
}

/* Drops every entry (the tables stay allocated). */
static void memo_clear(napi_env env, memo_t *m) {
  if (m->entries == NULL) return;
  for (uint32_t i = 0; i < m->used_top; i++) {
    if (m->entries[i].bytes != NULL) memo_release_entry(env, m, &m->entries[i]);
  }
  memset(m->index, 0, ((size_t)m->index_mask + 1) * sizeof *m->index);
  m->used_top = 0;
  m->hand = 0;
}

/* Drops everything and the tables; the next insertion allocates them for the current bound. */
static void memo_free(napi_env env, memo_t *m) {
  memo_clear(env, m);
  free(m->entries);
  free(m->index);
  m->entries = NULL;
  m->index = NULL;
  m->index_mask = 0;
}

static void memo_init(memo_t *m) {
  memset(m, 0, sizeof *m);
  m->max_entries = MEMO_DEFAULT_ENTRIES;
  m->max_bytes = MEMO_DEFAULT_MAX_BYTES;
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)m);
  }
  m->seed = seed;
  m->rng = mix64(seed) | 1;
}

/* Once the memo is full, a document it missed replaces an entry only one time in 16, at
 * random: a working set larger than the bound then settles on a stable part of it instead of
 * churning (every replacement costs a JS object that outlives the young generation), and a new
 * hot document still gets in after a few checks. */
static bool memo_admit(memo_t *m) {
  if (m->count < m->max_entries) return true;
  uint64_t x = m->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  m->rng = x;
  return (x >> 60) == 0;
}

static bool memo_alloc(memo_t *m) {
  if (m->entries != NULL) return true;
  if (m->max_entries == 0) return false;
  size_t slots = 2;
  while (slots < (size_t)m->max_entries * 2) slots <<= 1;
  m->entries = calloc(m->max_entries, sizeof *m->entries);
  m->index = calloc(slots, sizeof *m->index);
  if (m->entries == NULL || m->index == NULL) {
    free(m->entries);
    free(m->index);
    m->entries = NULL;
    m->index = NULL;
    return false;
  }
  m->index_mask = (uint32_t)(slots - 1);
  m->used_top = 0;
  m->hand = 0;
  return true;
}

static memo_entry_t *memo_find(memo_t *m, uint64_t h, const char *p, size_t n) {
  if (m->entries == NULL) return NULL;
  for (uint32_t i = (uint32_t)h & m->index_mask; m->index[i] != 0; i = (i + 1) & m->index_mask) {
    memo_entry_t *e = &m->entries[m->index[i] - 1];
    if (e->hash == h && e->len == n && memcmp(e->bytes, p, n) == 0) return e;
  }
  return NULL;
}

/* A free entry: a never used one, else the first the CLOCK hand finds unreferenced. */
static memo_entry_t *memo_victim(napi_env env, memo_t *m) {
  if (m->used_top < m->max_entries) return &m->entries[m->used_top++];
  for (;;) { /* at most two sweeps: the first clears every bit */
    memo_entry_t *e = &m->entries[m->hand];
    m->hand = m->hand + 1 == m->max_entries ? 0 : m->hand + 1;
    if (e->bytes == NULL) return e;
    if (e->referenced) {
      e->referenced = false;
      continue;
    }
    memo_drop_entry(env, m, e);
    m->evictions++;
    return e;
  }
}

/* Stores `value` for the bytes p[0..n). */
static void memo_insert(napi_env env, memo_t *m, uint64_t h, const char *p, size_t n,
                        napi_value value) {
  if (n > m->max_bytes || !memo_alloc(m)) return;
  char *copy = malloc(n ? n : 1);
  if (copy == NULL) return;
  napi_ref ref = NULL;
  if (napi_create_reference(env, value, 1, &ref) != napi_ok) {
    free(copy);
    return;
  }
  memcpy(copy, p, n);
  memo_entry_t *e = memo_victim(env, m);
  e->hash = h;
  e->bytes = copy;
  e->len = n;
  e->value = ref;
  e->referenced = false;
  uint32_t i = (uint32_t)h & m->index_mask;
  while (m->index[i] != 0) i = (i + 1) & m->index_mask;
  m->index[i] = (uint32_t)(e - m->entries) + 1;
  m->count++;
  m->bytes += n;
}

/* Cache sources, in the order of index.js's SOURCES. */
static const char *const SOURCES[] = {"network", "coalesced", "memory", "near",
                                      "redis",   "memcached", "stale"};

/* Splits a check result document `{...,"cache":{"source":"<s>","age_ms":<n>}}` into its
 * leading bytes (returned length, up to the `,"cache":` member) and the source index and age.
 * Returns 0 when the document does not end exactly like that (then it is decoded in full). */
static size_t split_result(const char *json, size_t len, uint32_t *source, double *age_ms) {
  static const char marker[] = ",\"cache\":{\"source\":\"";
  const size_t mlen = sizeof marker - 1;
  /* The member is at the very end: scan backwards over the last 96 bytes only. (A `,"` pair
   * cannot occur inside a JSON string, whose quotes are escaped, so the match is structural.) */
  if (len < mlen) return 0;
  const char *m = NULL;
  size_t stop = len > 96 ? len - 96 : 0;
  for (size_t i = len - mlen + 1; i-- > stop;) {
    if (json[i] == ',' && memcmp(json + i, marker, mlen) == 0) {
      m = json + i;
      break;
    }
  }
  if (m == NULL) return 0;
  const char *p = m + mlen, *end = json + len;
  const char *q = memchr(p, '"', (size_t)(end - p));
  if (q == NULL) return 0;
  size_t slen = (size_t)(q - p);
  uint32_t idx = UINT32_MAX;
  for (uint32_t i = 0; i < sizeof SOURCES / sizeof SOURCES[0]; i++) {
    if (strlen(SOURCES[i]) == slen && memcmp(SOURCES[i], p, slen) == 0) {
      idx = i;
      break;
    }
  }
  if (idx == UINT32_MAX) return 0;
  static const char age[] = "\",\"age_ms\":";
  p = q;
  if ((size_t)(end - p) < sizeof age - 1 || memcmp(p, age, sizeof age - 1) != 0) return 0;
  p += sizeof age - 1;
  uint64_t v = 0;
  int digits = 0;
  while (p < end && *p >= '0' && *p <= '9' && digits < 19) {
    v = v * 10 + (uint64_t)(*p - '0');
    p++;
    digits++;
  }
  if (digits == 0 || end - p != 2 || p[0] != '}' || p[1] != '}') return 0;
  *source = idx;
  *age_ms = (double)v;
  return (size_t)(m - json);
}

/* ---- string arguments -------------------------------------------------------------------- */

/* Copies a JS string into a fresh NUL-terminated buffer. Returns 0 on success, 1 when the value
 * is not a string, 2 when it contains a NUL character, -1 on a N-API failure (exception thrown). */
static int get_string(napi_env env, napi_value v, char **out) {
  *out = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t != napi_string) return 1;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return -1;
  char *buf = malloc(len + 1);
  if (buf == NULL) {
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return -1;
  }
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, v, buf, len + 1, &copied) != napi_ok) {
    free(buf);
    return -1;
  }
  if (strlen(buf) != copied) {
    free(buf);
    return 2;
  }
  *out = buf;
  return 0;
}

static void free_secret(char *s) {
  if (s != NULL) {
    volatile char *p = s;
    while (*p) *p++ = 0;
    free(s);
  }
}

/* [status, json] */
static napi_value make_answer(napi_env env, uint32_t status, const char *json) {
  napi_value arr, st, js;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_create_uint32(env, status, &st));
  if (json != NULL) {
    NAPI_CALL(env, napi_create_string_utf8(env, json, NAPI_AUTO_LENGTH, &js));
  } else {
    NAPI_CALL(env, napi_get_null(env, &js));
  }
  NAPI_CALL(env, napi_set_element(env, arr, 0, st));
  NAPI_CALL(env, napi_set_element(env, arr, 1, js));
  return arr;
}

/* An error answer made here (the library did not produce a document). */
static napi_value make_error_answer(napi_env env, uint32_t status, const char *message) {
  char buf[512];
  const char *code = status == TC_ADDON_CLOSED ? "TC_CLOSED" : tc_status_name(status);
  /* messages are fixed strings of this file: no escaping needed */
  snprintf(buf, sizeof buf, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
  return make_answer(env, status, buf);
}

/* Fetches args and the checker from argv[0]. Returns NULL (with an exception pending) when the
 * handle is not a checker handle. */
static checker_t *unwrap_checker(napi_env env, napi_value handle) {
  bool ok = false;
  if (napi_check_object_type_tag(env, handle, &CHECKER_TAG, &ok) != napi_ok || !ok) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "not a tokenchecker handle");
    return NULL;
  }
  void *p = NULL;
  if (napi_get_value_external(env, handle, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "not a tokenchecker handle");
    return NULL;
  }
  return p;
}

static addon_t *get_addon(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

/* ---- the threadsafe function ------------------------------------------------------------- */

/* Library runtime thread. */
static void on_library_done(void *user_data, tc_status status, char *json) {
  request_t *r = user_data;
  addon_t *a = r->addon;
  r->status = (uint32_t)status;
  r->json = json;
  napi_status ns = napi_closing;
  pthread_mutex_lock(&a->mu);
  if (a->tsfn != NULL) {
    ns = napi_call_threadsafe_function(a->tsfn, r, napi_tsfn_nonblocking);
  }
  pthread_mutex_unlock(&a->mu);
  if (ns != napi_ok) {
    /* The environment is going away: nobody is left to hear the answer. The callback
     * reference dies with the environment. */
    if (r->kind == OP_DEPENDENT && json != NULL) memset(json, 0, strlen(json));
    tc_string_free(json);
    checker_op_done(r->checker);
    free(r);
    addon_release(a);
  }
}

/* Main thread. `env` is NULL when the function is being torn down with items still queued. */
static void call_js(napi_env env, napi_value unused, void *context, void *data) {
  (void)unused;
  addon_t *a = context;
  request_t *r = data;
  checker_op_done(r->checker);

  if (env == NULL) {
    if (r->kind == OP_DEPENDENT && r->json != NULL) memset(r->json, 0, strlen(r->json));
    tc_string_free(r->json);
    free(r);
    addon_release(a);
    return;
  }

  if (--a->pending == 0) {
    napi_unref_threadsafe_function(env, a->tsfn);
  }

  napi_value cb = NULL, argv[2], recv;
  bool ok = napi_get_reference_value(env, r->callback, &cb) == napi_ok && cb != NULL;
  napi_delete_reference(env, r->callback);
  ok = ok && napi_create_uint32(env, r->status, &argv[0]) == napi_ok;
  if (r->json != NULL) {
    ok = ok && napi_create_string_utf8(env, r->json, NAPI_AUTO_LENGTH, &argv[1]) == napi_ok;
    if (r->kind == OP_DEPENDENT) memset(r->json, 0, strlen(r->json));
    tc_string_free(r->json);
  } else {
    ok = ok && napi_get_null(env, &argv[1]) == napi_ok;
  }
  free(r);
  addon_release(a);
  if (ok && napi_get_undefined(env, &recv) == napi_ok) {
    /* An exception thrown by the callback surfaces as an uncaught exception. */
    napi_call_function(env, recv, cb, 2, argv, NULL);
  }
}

static void tsfn_finalize(napi_env env, void *finalize_data, void *hint) {
  (void)env;
  (void)hint;
  addon_t *a = finalize_data;
  pthread_mutex_lock(&a->mu);
  a->tsfn = NULL;
  pthread_mutex_unlock(&a->mu);
  addon_release(a);
}

static void addon_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_t *a = data;
  /* Finalizers may delete references (Node finalizes these before the plain ones). */
  memo_free(env, &a->memo);
  addon_release(a);
}

/* ---- checker handles --------------------------------------------------------------------- */

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
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

/* create(configJson) -> [0, handle] | [status, errorJson] */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *config = NULL;
  int rc = argc < 1 ? 1 : get_string(env, argv[0], &config);
  if (rc < 0) return NULL;
  if (rc == 1) return make_error_answer(env, TC_INVALID_CONFIG, "the configuration must be a string");
  if (rc == 2)
    return make_error_answer(env, TC_INVALID_CONFIG, "the configuration contains a NUL character");
  tc_checker *tc = NULL;
  char *err = NULL;
  tc_status st = tc_new(config, &tc, &err);
  free_secret(config);
  if (st != TC_OK) {
    napi_value ans = make_answer(env, st, err);
    tc_string_free(err);
    return ans;
  }
  tc_string_free(err);
  napi_value handle = wrap_checker(env, tc);
  if (handle == NULL) return NULL;
  napi_value arr, zero;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_create_uint32(env, 0, &zero));
  NAPI_CALL(env, napi_set_element(env, arr, 0, zero));
  NAPI_CALL(env, napi_set_element(env, arr, 1, handle));
  return arr;
}

/* ---- blocking calls on libuv's pool ------------------------------------------------------- */

typedef enum { WORK_CREATE, WORK_PURGE, WORK_PURGE_IDENTITY } work_kind;

typedef struct work {
  work_kind kind;
  napi_async_work handle;
  napi_ref callback;
  checker_t *checker; /* purges */
  char *arg;          /* config, token or identity id */
  tc_checker *created;
  char *json;
  uint32_t status;
} work_t;

static void work_execute(napi_env env, void *data) {
  (void)env;
  work_t *w = data;
  switch (w->kind) {
    case WORK_CREATE:
      w->status = tc_new(w->arg, &w->created, &w->json);
      break;
    case WORK_PURGE:
      w->status = tc_purge(checker_tc(w->checker), w->arg);
      break;
    case WORK_PURGE_IDENTITY:
      w->status = tc_purge_identity(checker_tc(w->checker), w->arg);
      break;
  }
}

static void work_complete(napi_env env, napi_status status, void *data) {
  work_t *w = data;
  napi_value cb = NULL, argv[2], recv;
  bool ok = napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb != NULL;
  napi_delete_reference(env, w->callback);
  napi_delete_async_work(env, w->handle);
  free_secret(w->arg);
  if (w->checker != NULL) checker_op_done(w->checker);
  if (w->kind != WORK_CREATE) {
    /* purge / purgeIdentity: drop memoised documents too (they hold no token, and the memo
     * never answers by itself, but a purge means "forget"). */
    addon_t *a = get_addon(env);
    if (a != NULL) memo_clear(env, &a->memo);
  }
  if (status == napi_cancelled) {
    if (w->created != NULL) tc_free(w->created);
    tc_string_free(w->json);
    free(w);
    return;
  }
  ok = ok && napi_create_uint32(env, w->status, &argv[0]) == napi_ok;
  if (w->kind == WORK_CREATE && w->status == TC_OK) {
    argv[1] = wrap_checker(env, w->created);
    ok = ok && argv[1] != NULL;
  } else if (w->json != NULL) {
    ok = ok && napi_create_string_utf8(env, w->json, NAPI_AUTO_LENGTH, &argv[1]) == napi_ok;
  } else {
    ok = ok && napi_get_null(env, &argv[1]) == napi_ok;
  }
  tc_string_free(w->json);
  free(w);
  if (ok && napi_get_undefined(env, &recv) == napi_ok) {
    napi_call_function(env, recv, cb, 2, argv, NULL);
  }
}

static napi_value queue_work(napi_env env, work_t *w, napi_value cb, const char *name) {
  napi_value res_name;
  if (napi_create_reference(env, cb, 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &res_name) != napi_ok ||
      napi_create_async_work(env, NULL, res_name, work_execute, work_complete, w, &w->handle) !=
          napi_ok) {
    throw_last_error(env, "napi_create_async_work");
    if (w->callback) napi_delete_reference(env, w->callback);
    free_secret(w->arg);
    free(w);
    return NULL;
  }
  if (napi_queue_async_work(env, w->handle) != napi_ok) {
    throw_last_error(env, "napi_queue_async_work");
    napi_delete_reference(env, w->callback);
    napi_delete_async_work(env, w->handle);
    free_secret(w->arg);
    free(w);
    return NULL;
  }
  if (w->checker != NULL) checker_op_start(w->checker);
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

static bool is_function(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_function;
}

/* createAsync(configJson, cb) -> undefined | [status, errorJson]; cb(0, handle) | cb(st, json) */
static napi_value js_create_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !is_function(env, argv[1])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "createAsync(config, callback)");
    return NULL;
  }
  char *config = NULL;
  int rc = get_string(env, argv[0], &config);
  if (rc < 0) return NULL;
  if (rc == 1) return make_error_answer(env, TC_INVALID_CONFIG, "the configuration must be a string");
  if (rc == 2)
    return make_error_answer(env, TC_INVALID_CONFIG, "the configuration contains a NUL character");
  work_t *w = calloc(1, sizeof *w);
  if (w == NULL) {
    free_secret(config);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  w->kind = WORK_CREATE;
  w->arg = config;
  return queue_work(env, w, argv[1], "tokenchecker.create");
}

/* purge(handle, token, cb) / purgeIdentity(handle, id, cb) */
static napi_value purge_common(napi_env env, napi_callback_info info, work_kind kind) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !is_function(env, argv[2])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "purge(handle, string, callback)");
    return NULL;
  }
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  if (c->closed) return make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");
  char *arg = NULL;
  int rc = get_string(env, argv[1], &arg);
  if (rc < 0) return NULL;
  const char *what = kind == WORK_PURGE ? "the token" : "the identity id";
  if (rc == 1) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    return make_error_answer(env, TC_INVALID_ARGUMENT, msg);
  }
  if (rc == 2) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s contains a NUL character", what);
    return make_error_answer(env, TC_INVALID_ARGUMENT, msg);
  }
  work_t *w = calloc(1, sizeof *w);
  if (w == NULL) {
    free_secret(arg);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  w->kind = kind;
  w->arg = arg;
  w->checker = c;
  return queue_work(env, w, argv[2], kind == WORK_PURGE ? "tokenchecker.purge" : "tokenchecker.purgeIdentity");
}

static napi_value js_purge(napi_env env, napi_callback_info info) {
  return purge_common(env, info, WORK_PURGE);
}

static napi_value js_purge_identity(napi_env env, napi_callback_info info) {
  return purge_common(env, info, WORK_PURGE_IDENTITY);
}

/* ---- asynchronous library calls ------------------------------------------------------------ */

/* check(handle, token, cb), authorize(handle, token, requestJson, cb),
 * dependentToken(handle, token, scope, cb):
 *   -> [status, json] when answered synchronously (cache hit, invalid input, not started)
 *   -> undefined when started: cb(status, json) is called exactly once later. */
static napi_value start_op(napi_env env, napi_callback_info info, op_kind kind, bool try_cache) {
  size_t want = kind == OP_CHECK ? 3 : 4;
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < want || !is_function(env, argv[want - 1])) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "missing arguments or callback");
    return NULL;
  }
  napi_value cb = argv[want - 1];
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  if (c->closed) return make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");

  char *token = NULL, *extra = NULL;
  int rc = get_string(env, argv[1], &token);
  if (rc < 0) return NULL;
  if (rc == 1) return make_error_answer(env, TC_INVALID_ARGUMENT, "the token must be a string");
  if (rc == 2) return make_error_answer(env, TC_INVALID_ARGUMENT, "the token contains a NUL character");
  if (kind != OP_CHECK) {
    rc = get_string(env, argv[2], &extra);
    if (rc != 0) {
      free_secret(token);
      if (rc < 0) return NULL;
      const char *msg = kind == OP_AUTHORIZE
                            ? (rc == 1 ? "the request must be a string" : "the request contains a NUL character")
                            : (rc == 1 ? "the scope must be a string" : "the scope contains a NUL character");
      return make_error_answer(env, TC_INVALID_ARGUMENT, msg);
    }
  }

  if (kind == OP_CHECK && try_cache) {
    /* Fast path: answered from the in-process cache, no thread hop at all. */
    char *json = NULL;
    tc_status st = tc_try_check(checker_tc(c), token, &json);
    if (st != TC_WOULD_BLOCK) {
      free_secret(token);
      napi_value ans = make_answer(env, st, json);
      tc_string_free(json);
      return ans;
    }
    tc_string_free(json);
  }

  addon_t *a = get_addon(env);
  request_t *r = calloc(1, sizeof *r);
  if (r == NULL || a == NULL) {
    free(r);
    free_secret(token);
    free_secret(extra);
    napi_throw_error(env, "TC_ADDON", "out of memory");
    return NULL;
  }
  r->addon = a;
  r->checker = c;
  r->kind = kind;
  if (napi_create_reference(env, cb, 1, &r->callback) != napi_ok) {
    free(r);
    free_secret(token);
    free_secret(extra);
    throw_last_error(env, "napi_create_reference");
    return NULL;
  }

  /* Count the request before starting it: the completion may arrive on another thread at
   * once, but it is delivered on this thread, after this function returns. */
  atomic_fetch_add(&a->refs, 1);
  if (a->pending++ == 0) napi_ref_threadsafe_function(env, a->tsfn);
  checker_op_start(c);

  tc_status st;
  switch (kind) {
    case OP_CHECK:
      st = tc_check_async(checker_tc(c), token, on_library_done, r);
      break;
    case OP_AUTHORIZE:
      st = tc_authorize_async(checker_tc(c), token, extra, on_library_done, r);
      break;
    default:
      st = tc_dependent_token_async(checker_tc(c), token, extra, on_library_done, r);
      break;
  }
  /* The library copied its inputs. */
  free_secret(token);
  free_secret(extra);

  if (st != TC_OK) {
    checker_op_done(c);
    if (--a->pending == 0) napi_unref_threadsafe_function(env, a->tsfn);
    napi_delete_reference(env, r->callback);
    free(r);
    addon_release(a);
    return make_error_answer(env, st, "the library refused to start the call");
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

static napi_value js_check(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_CHECK, true);
}

/* checkAsync(handle, token, cb): like check() without the cache attempt (checkCached just
 * made it). -> undefined | [status, json] */
static napi_value js_check_async(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_CHECK, false);
}

static napi_value js_authorize(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_AUTHORIZE, false);
}

static napi_value js_dependent_token(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_DEPENDENT, false);
}

/* The decoded object for a successful result document, through the memo. Returns NULL (no
 * exception pending) when the document is not memoisable or decoding failed: the caller then
 * answers [status, json] and JavaScript decodes it the ordinary way. */
static napi_value memo_value(napi_env env, addon_t *a, const char *json, napi_value decode,
                             napi_value scratch_v, double *scratch) {
  size_t len = strlen(json);
  uint32_t source = 0;
  double age_ms = 0;
  size_t n = split_result(json, len, &source, &age_ms);
  if (n == 0) return NULL;
  memo_t *m = &a->memo;
  uint64_t h = memo_hash((const unsigned char *)json, n, m->seed);
  napi_value value = NULL;
  bool keep = true;
  memo_entry_t *e = memo_find(m, h, json, n);
  if (e != NULL && napi_get_reference_value(env, e->value, &value) == napi_ok && value != NULL) {
    e->referenced = true;
    m->hits++;
  } else {
    if (e != NULL) memo_drop_entry(env, m, e);
    m->misses++;
    /* Decided before decoding: a document that will not be kept is decoded into a plain
     * AuthState, handed out as is (no frozen copy to make and copy from). */
    keep = m->max_entries != 0 && n <= m->max_bytes && memo_admit(m);
    napi_value args[2], recv;
    if (napi_create_string_utf8(env, json, len, &args[0]) != napi_ok ||
        napi_get_boolean(env, keep, &args[1]) != napi_ok ||
        napi_get_undefined(env, &recv) != napi_ok ||
        napi_call_function(env, recv, decode, 2, args, &value) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      return NULL;
    }
    napi_valuetype t;
    if (napi_typeof(env, value, &t) != napi_ok || t != napi_object) return NULL;
    /* JavaScript ran: look at the scratch array again rather than trust the old pointer */
    napi_typedarray_type ta_type;
    size_t ta_len = 0;
    void *ta_data = NULL;
    if (napi_get_typedarray_info(env, scratch_v, &ta_type, &ta_len, &ta_data, NULL, NULL) != napi_ok ||
        ta_type != napi_float64_array || ta_len < 3 || ta_data == NULL) {
      return NULL;
    }
    scratch = ta_data;
    if (keep) memo_insert(env, m, h, json, n, value);
  }
  scratch[0] = age_ms;
  scratch[1] = (double)source;
  scratch[2] = keep ? 1 : 0;
  return value;
}

/* checkCached(handle, token, scratch, decode):
 *   -> object       a cached success: what decode(json, keep) returned for this document.
 *                   scratch[2] = 1: the memo's (frozen) object, shared: copy it, taking the
 *                   cache age in ms from scratch[0] and the source index from scratch[1];
 *                   scratch[2] = 0: decoded for this call only (keep was false), use it as is
 *   -> undefined    not cached: start the call with checkAsync
 *   -> [status, json]  anything else (a cached failure, invalid input, a closed checker, a
 *                   document the memo does not handle)
 * `scratch` is a Float64Array of length >= 3, `decode` a function(json, keep) -> object. */
static napi_value js_check_cached(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "checkCached(handle, token, scratch, decode)");
    return NULL;
  }
  napi_typedarray_type ta_type;
  size_t ta_len = 0;
  void *ta_data = NULL;
  if (napi_get_typedarray_info(env, argv[2], &ta_type, &ta_len, &ta_data, NULL, NULL) != napi_ok ||
      ta_type != napi_float64_array || ta_len < 3 || ta_data == NULL) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "checkCached: scratch must be a Float64Array(3)");
    return NULL;
  }
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  if (c->closed) return make_error_answer(env, TC_ADDON_CLOSED, "the checker is closed");

  /* The token, into a stack buffer when it fits (no malloc, no separate length query). A
   * string is complete when at least 4 bytes were left over (a UTF-8 character is <= 4). */
  char small[1024];
  char *token = small;
  size_t copied = 0;
  napi_status ns = napi_get_value_string_utf8(env, argv[1], small, sizeof small, &copied);
  if (ns == napi_string_expected) {
    return make_error_answer(env, TC_INVALID_ARGUMENT, "the token must be a string");
  }
  if (ns != napi_ok) {
    throw_last_error(env, "napi_get_value_string_utf8");
    return NULL;
  }
  if (copied + 5 > sizeof small) {
    explicit_bzero(small, sizeof small);
    int rc = get_string(env, argv[1], &token);
    if (rc < 0) return NULL;
    if (rc == 1) return make_error_answer(env, TC_INVALID_ARGUMENT, "the token must be a string");
    if (rc == 2) return make_error_answer(env, TC_INVALID_ARGUMENT, "the token contains a NUL character");
  } else if (memchr(small, 0, copied) != NULL) {
    explicit_bzero(small, copied);
    return make_error_answer(env, TC_INVALID_ARGUMENT, "the token contains a NUL character");
  }

  char *json = NULL;
  tc_status st = tc_try_check(checker_tc(c), token, &json);
  if (token == small) {
    explicit_bzero(small, copied);
  } else {
    free_secret(token);
  }
  napi_value out = NULL;
  if (st == TC_WOULD_BLOCK) {
    napi_get_undefined(env, &out);
  } else if (st == TC_OK && json != NULL) {
    addon_t *a = get_addon(env);
    if (a != NULL) out = memo_value(env, a, json, argv[3], argv[2], ta_data);
    if (out == NULL) out = make_answer(env, st, json);
  } else {
    out = make_answer(env, st, json);
  }
  tc_string_free(json);
  return out;
}

/* memo(maxEntries?, maxBytes?): sets the result memo's bounds for this thread (and empties it,
 * statistics included); returns its statistics. Without arguments it only returns them. */
static napi_value js_memo(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out, v;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  addon_t *a = get_addon(env);
  if (a == NULL) {
    napi_throw_error(env, "TC_ADDON", "no addon instance");
    return NULL;
  }
  memo_t *m = &a->memo;
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 1) NAPI_CALL(env, napi_typeof(env, argv[0], &t0));
  if (argc >= 2) NAPI_CALL(env, napi_typeof(env, argv[1], &t1));
  if (t0 != napi_undefined || t1 != napi_undefined) {
    uint32_t entries = m->max_entries, bytes = m->max_bytes;
    double d;
    if (t0 != napi_undefined) {
      if (t0 != napi_number || napi_get_value_double(env, argv[0], &d) != napi_ok || !(d >= 0) ||
          d > MEMO_MAX_ENTRIES || d != (double)(uint32_t)d) {
        napi_throw_range_error(env, "TC_INVALID_ARGUMENT", "maxEntries must be an integer in [0, 1048576]");
        return NULL;
      }
      entries = (uint32_t)d;
    }
    if (t1 != napi_undefined) {
      if (t1 != napi_number || napi_get_value_double(env, argv[1], &d) != napi_ok || !(d >= 0) ||
          d > (64.0 * 1024 * 1024) || d != (double)(uint32_t)d) {
        napi_throw_range_error(env, "TC_INVALID_ARGUMENT", "maxBytes must be an integer in [0, 67108864]");
        return NULL;
      }
      bytes = (uint32_t)d;
    }
    memo_free(env, m);
    m->max_entries = entries;
    m->max_bytes = bytes;
    m->hits = m->misses = m->evictions = 0;
  }
  NAPI_CALL(env, napi_create_object(env, &out));
#define SET_NUM(name, val)                                          \
  NAPI_CALL(env, napi_create_double(env, (double)(val), &v));       \
  NAPI_CALL(env, napi_set_named_property(env, out, name, v))
  SET_NUM("maxEntries", m->max_entries);
  SET_NUM("maxBytes", m->max_bytes);
  SET_NUM("entries", m->count);
  SET_NUM("bytes", m->bytes);
  SET_NUM("hits", m->hits);
  SET_NUM("misses", m->misses);
  SET_NUM("evictions", m->evictions);
#undef SET_NUM
  return out;
}

/* memoClear(): empties the result memo of this thread. */
static napi_value js_memo_clear(napi_env env, napi_callback_info info) {
  (void)info;
  addon_t *a = get_addon(env);
  if (a != NULL) memo_clear(env, &a->memo);
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

/* ---- the rest ---------------------------------------------------------------------------- */

/* close(handle): idempotent. tc_free happens once nothing is in flight. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "close(handle)");
    return NULL;
  }
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  checker_close(c);
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
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
  napi_value argv[1], out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "TC_INVALID_ARGUMENT", "isFreed(handle)");
    return NULL;
  }
  checker_t *c = unwrap_checker(env, argv[0]);
  if (c == NULL) return NULL;
  NAPI_CALL(env, napi_get_boolean(env, checker_tc(c) == NULL, &out));
  return out;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  char *json = NULL;
  tc_status st = tc_stats(&json);
  napi_value ans = make_answer(env, st, json);
  tc_string_free(json);
  return ans;
}

static napi_value js_version(napi_env env, napi_callback_info info) {
  (void)info;
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
  memo_init(&a->memo);

  napi_value name;
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

  napi_property_descriptor props[] = {
      {"create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"createAsync", NULL, js_create_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"check", NULL, js_check, NULL, NULL, NULL, napi_enumerable, NULL},
      {"checkCached", NULL, js_check_cached, NULL, NULL, NULL, napi_enumerable, NULL},
      {"checkAsync", NULL, js_check_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memo", NULL, js_memo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memoClear", NULL, js_memo_clear, NULL, NULL, NULL, napi_enumerable, NULL},
      {"authorize", NULL, js_authorize, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dependentToken", NULL, js_dependent_token, NULL, NULL, NULL, napi_enumerable, NULL},
      {"purge", NULL, js_purge, NULL, NULL, NULL, napi_enumerable, NULL},
      {"purgeIdentity", NULL, js_purge_identity, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inFlight", NULL, js_in_flight, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isFreed", NULL, js_is_freed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"version", NULL, js_version, NULL, NULL, NULL, napi_enumerable, NULL},
      {"statusName", NULL, js_status_name, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
