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
 *   touching the runtime.
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
  (void)env;
  (void)hint;
  addon_release(data);
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
static napi_value start_op(napi_env env, napi_callback_info info, op_kind kind) {
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

  if (kind == OP_CHECK) {
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
  return start_op(env, info, OP_CHECK);
}

static napi_value js_authorize(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_AUTHORIZE);
}

static napi_value js_dependent_token(napi_env env, napi_callback_info info) {
  return start_op(env, info, OP_DEPENDENT);
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
