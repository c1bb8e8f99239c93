/*
 * Node-API (C, NAPI_VERSION 8) addon over the tokenchecker C ABI.
 *
 * Design
 * ------
 * - A thin layer: native functions return `[status, json]` for answers known synchronously, or
 *   `undefined` once the work was started; `callback(status, json)` is then called later,
 *   exactly once. index.js owns promises, object shapes and the memo of decoded answers.
 * - Cached checks: checkAnswer() is one tc_try_check_answer. The answer's id, source and age go
 *   back through a Float64Array made once per addon instance (`answerOut`): a cached check
 *   creates no JavaScript value here. index.js keys its memo by the id (unique per cached
 *   answer, never reused) and asks for the stable text (answerText) only for an id it lacks.
 *   The addon holds the last answer until the next checkAnswer/answerText call or teardown.
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

typedef struct addon {
  atomic_int refs;               /* env + tsfn + requests in flight */
  pthread_mutex_t mu;            /* guards tsfn against its own finalization */
  napi_threadsafe_function tsfn; /* NULL once finalized */
  uint32_t pending;              /* main thread only: async requests not yet delivered */
  const tc_answer *last;         /* main thread only: the last answer checkAnswer gave */
  double *out;                   /* answerOut's data: [answer id (0: not cached), source, age] */
  napi_ref out_ref;              /* keeps answerOut (and so `out`) alive */
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
typedef enum { OP_CHECK, OP_AUTHORIZE, OP_DEPENDENT, OP_TRY_CHECK } op_kind;
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
  tc_answer_free(a->last);
  /* Finalizers may delete references (Node finalizes these before the plain ones). */
  if (a->out_ref != NULL) napi_delete_reference(env, a->out_ref);
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
 * cb), dependentToken(handle, token, scope, cb):
 *   -> [status, json] when answered synchronously (cache hit, invalid input, not started)
 *   -> undefined when started: cb(status, json) is called exactly once later.
 * check() tries tc_try_check first (the document path, used for fetch_groups "eager"). */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *data;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  bool try_cache = (uintptr_t)data == OP_TRY_CHECK;
  op_kind kind = try_cache ? OP_CHECK : (op_kind)(uintptr_t)data;
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
  tc_status st = try_cache ? tc_try_check(checker_tc(c), token, &json) : TC_WOULD_BLOCK;
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

/* ---- the answer path of check() ------------------------------------------------------------ */

/* Cache sources, in the order of index.js's SOURCES (answerOut[1] is an index in it). */
static const char *const SOURCES[] = {"network", "coalesced", "memory", "near",
                                      "redis",   "memcached", "stale"};

static double source_index(const char *s) {
  uint32_t i = 0;
  while (i < sizeof SOURCES / sizeof *SOURCES && (s == NULL || strcmp(s, SOURCES[i]) != 0)) i++;
  return i; /* past the end: a source this addon does not know */
}

/* checkAnswer(handle, token) -> undefined: answerOut = [id, source index, age_ms], id 0 when
 * the answer is not cached (start the call with checkAsync); [status, json] otherwise (a cached
 * failure, invalid input, a closed checker). */
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
  tc_answer_free(a->last);
  a->last = NULL;
  const tc_answer *answer = NULL;
  tc_answer_meta meta = {NULL, 0};
  char *err = NULL;
  tc_status st = tc_try_check_answer(checker_tc(c), token, &answer, &meta, &err);
  drop_str(token, small);
  if (st == TC_OK) {
    a->last = answer;
    a->out[0] = (double)tc_answer_id(answer);
    a->out[1] = source_index(meta.source);
    a->out[2] = (double)meta.age_ms;
  } else if (st == TC_WOULD_BLOCK) {
    a->out[0] = 0;
  } else {
    ans = make_answer(env, st, err);
  }
  tc_string_free(err);
  return ans; /* NULL (no exception pending): undefined */
}

/* answerText() -> the stable text of the answer the last checkAnswer gave (releasing it), or
 * null when there is none. */
static napi_value js_answer_text(napi_env env, napi_callback_info info) {
  addon_t *a = NULL;
  napi_value out;
  NAPI_CALL(env, napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&a));
  size_t len = 0;
  const char *text = tc_answer_text(a->last, &len);
  napi_status st = text == NULL ? napi_get_null(env, &out) : napi_create_string_utf8(env, text, len, &out);
  tc_answer_free(a->last);
  a->last = NULL;
  NAPI_CALL(env, st);
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
  NAPI_CALL(env, napi_create_arraybuffer(env, 3 * sizeof(double), (void **)&a->out, &buffer));
  NAPI_CALL(env, napi_create_typedarray(env, napi_float64_array, 3, buffer, 0, &out));
  NAPI_CALL(env, napi_create_reference(env, out, 1, &a->out_ref));

#define FN(name, fn, data) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, data}
#define OP(name, fn, kind) FN(name, fn, (void *)(uintptr_t)(kind))
  napi_property_descriptor props[] = {
      OP("create", js_create, CREATE_SYNC),
      OP("createAsync", js_create, WORK_CREATE),
      OP("check", js_start, OP_TRY_CHECK),
      OP("checkAsync", js_start, OP_CHECK),
      OP("authorize", js_start, OP_AUTHORIZE),
      OP("dependentToken", js_start, OP_DEPENDENT),
      OP("purge", js_purge, WORK_PURGE),
      OP("purgeIdentity", js_purge, WORK_PURGE_IDENTITY),
      FN("checkAnswer", js_check_answer, a),
      FN("answerText", js_answer_text, a),
      FN("noop", js_noop, a),
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
