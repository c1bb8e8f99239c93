/* tokenchecker._speedups: the hot paths of the Python binding in C, over the C ABI
 * (include/tokenchecker.h). Optional: without it (or with TOKENCHECKER_PY_PURE=1) the package
 * runs the same paths through ctypes (_pycore.py).
 *
 * It does not link libtokenchecker. The library is loaded once, by _native.py (ctypes), and
 * bind() receives the addresses of the functions it needs from that handle: the extension uses
 * exactly the copy ctypes loaded (the wheel's bundled copy, $TOKENCHECKER_LIB_DIR's, the
 * system's), and the wheel's extension has no dependency for auditwheel to graft.
 *
 * What is here:
 * - Handle: owns one tc_checker* (tc_free when the last reference goes).
 * - Info: what a check found, built from tc_answer_fields (no JSON parser), holding a reference
 *   to the answer; the identity principals and the effective identity are built once, the other
 *   fields are read from the answer on access.
 * - the answer memo (below): Info by answer id, bounded by bytes.
 * - Policy: a compiled authorization request (tc_policy_new), its principals as str.
 * - State: the core of AuthState (its Python subclass in _checker.py adds the rest): a cached
 *   check is tc_try_check_answer with the GIL held, then the memo; a miss or a failure calls
 *   back into the subclass (_miss, _fail, _resolve_slow, _authorize_slow), which blocks with the
 *   GIL released (check(..., block=True)) or waits cooperatively.
 *
 * The memo (the one rule of the header, beside tc_answer_id): one per process, Info by answer
 * id, bounded by bytes: TOKENCHECKER_MEMO_BYTES (read once by _native.memo_bytes(); default
 * 16 MiB, 0 = off). An entry counts the length of the answer's text (tc_answer_text: the
 * answer's strings, which the Info keeps alive with the answer) plus the lengths of the
 * principals it built, plus a fixed MEMO_ENTRY_OVERHEAD bytes: the Info object, its frozenset
 * and str headers, the table slot and the queue slot. Oldest first out; a full memo admits one
 * new entry in 8 (MEMO_ADMIT_WHEN_FULL, below). A miss costs one tc_answer_fields read and a
 * few str.
 *
 * Limited API (abi3, CPython 3.9 and later): one wheel for every Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenchecker.h"

#if defined(Py_LIMITED_API) && Py_LIMITED_API + 0 < 0x030A0000
/* In the stable ABI since 3.10; exported with this signature by every CPython 3 before that,
 * so the 3.9-based abi3 build may use it too. */
PyAPI_FUNC(const char *) PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size);
#endif

/* Py_NewRef and Py_XSETREF are not in the 3.9 limited API */
static inline PyObject *tc_newref(PyObject *o) {
  Py_INCREF(o);
  return o;
}
#define NEWREF(o) tc_newref((PyObject *)(o))
#define XSETREF(dst, src)            \
  do {                               \
    PyObject *old_ = (PyObject *)(dst); \
    (dst) = (src);                   \
    Py_XDECREF(old_);                \
  } while (0)

/* Fixed bytes counted per memo entry besides the strings' lengths (see above). */
#define MEMO_ENTRY_OVERHEAD 512
#define IDENTITY_PREFIX "urn:globus:auth:identity:"
#define IDENTITY_PREFIX_LEN (sizeof(IDENTITY_PREFIX) - 1)

/* ---- the library's functions, from ctypes' handle ------------------------------------------ */

#define TC_FUNCS(X)            \
  X(tc_abi_version)            \
  X(tc_free)                   \
  X(tc_string_free)            \
  X(tc_check_answer)           \
  X(tc_try_check_answer)       \
  X(tc_answer_fields)          \
  X(tc_answer_text)            \
  X(tc_answer_id)              \
  X(tc_answer_free)            \
  X(tc_answer_introspection)   \
  X(tc_policy_new)             \
  X(tc_policy_free)            \
  X(tc_policy_len)             \
  X(tc_policy_principal)       \
  X(tc_authorize_answer)       \
  X(tc_try_authorize_answer)

#define DECLARE(name) static __typeof__(name) *p_##name;
TC_FUNCS(DECLARE)
#undef DECLARE

static int bound;
static size_t memo_max_bytes;
/* errors.from_status(status, document) -> exception instance */
static PyObject *error_factory;

/* interned method names of the Python subclass's slow paths */
static PyObject *str_miss, *str_fail, *str_resolve_slow, *str_authorize_slow;

/* ---- small helpers -------------------------------------------------------------------------- */

static PyObject *str_or_none(tc_str s) {
  if (s.ptr == NULL) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(s.ptr, (Py_ssize_t)s.len, "replace");
}

static PyObject *list_tuple(tc_str_list l) {
  PyObject *t = PyTuple_New((Py_ssize_t)l.len);
  if (t == NULL) return NULL;
  for (size_t i = 0; i < l.len; i++) {
    PyObject *s = PyUnicode_DecodeUTF8(l.items[i].ptr ? l.items[i].ptr : "", (Py_ssize_t)l.items[i].len, "replace");
    if (s == NULL || PyTuple_SetItem(t, (Py_ssize_t)i, s) < 0) {
      Py_DECREF(t);
      return NULL;
    }
  }
  return t;
}

static PyObject *list_frozenset(tc_str_list l) {
  PyObject *fs = PyFrozenSet_New(NULL);
  if (fs == NULL) return NULL;
  for (size_t i = 0; i < l.len; i++) {
    PyObject *s = PyUnicode_DecodeUTF8(l.items[i].ptr ? l.items[i].ptr : "", (Py_ssize_t)l.items[i].len, "replace");
    if (s == NULL || PySet_Add(fs, s) < 0) {
      Py_XDECREF(s);
      Py_DECREF(fs);
      return NULL;
    }
    Py_DECREF(s);
  }
  return fs;
}

/* "urn:globus:auth:identity:" + id */
static PyObject *identity_principal(tc_str id) {
  char stack[IDENTITY_PREFIX_LEN + 128];
  size_t n = IDENTITY_PREFIX_LEN + id.len;
  char *buf = n <= sizeof stack ? stack : PyMem_Malloc(n);
  if (buf == NULL) return PyErr_NoMemory();
  memcpy(buf, IDENTITY_PREFIX, IDENTITY_PREFIX_LEN);
  if (id.len) memcpy(buf + IDENTITY_PREFIX_LEN, id.ptr, id.len);
  PyObject *s = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace");
  if (buf != stack) PyMem_Free(buf);
  return s;
}

static int str_eq(tc_str a, tc_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The cache sources are static C strings: one str each, kept. */
static struct {
  const char *ptr;
  PyObject *str;
} sources[16];

static PyObject *source_str(const char *ptr) {
  if (ptr == NULL) Py_RETURN_NONE;
  for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
    if (sources[i].ptr == ptr) return NEWREF(sources[i].str);
    if (sources[i].ptr == NULL) {
      PyObject *s = PyUnicode_FromString(ptr);
      if (s == NULL) return NULL;
      sources[i].ptr = ptr;
      sources[i].str = NEWREF(s);
      return s;
    }
  }
  return PyUnicode_FromString(ptr);
}

/* Takes the library's error document (may be NULL) and frees it. */
static PyObject *take_error(char *err) {
  if (err == NULL) return PyUnicode_FromString("");
  PyObject *s = PyUnicode_DecodeUTF8(err, (Py_ssize_t)strlen(err), "replace");
  p_tc_string_free(err);
  return s;
}

static PyObject *raise_status(tc_status st, char *err) {
  PyObject *doc = take_error(err);
  if (doc == NULL) return NULL;
  PyObject *exc = PyObject_CallFunction(error_factory, "IO", (unsigned int)st, doc);
  Py_DECREF(doc);
  if (exc == NULL) return NULL;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

static int check_bound(void) {
  if (!bound) {
    PyErr_SetString(PyExc_RuntimeError, "tokenchecker._speedups: bind() was not called");
    return -1;
  }
  return 0;
}

/* ---- Handle --------------------------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  tc_checker *ptr;
} HandleObject;

static PyTypeObject *Handle_Type;

static int Handle_init(PyObject *self, PyObject *args, PyObject *kwds) {
  PyObject *addr;
  if (kwds != NULL && PyDict_Size(kwds) != 0) {
    PyErr_SetString(PyExc_TypeError, "Handle(address) takes no keyword arguments");
    return -1;
  }
  if (!PyArg_UnpackTuple(args, "Handle", 1, 1, &addr)) return -1;
  if (check_bound() < 0) return -1;
  void *p = PyLong_AsVoidPtr(addr);
  if (p == NULL && PyErr_Occurred()) return -1;
  HandleObject *h = (HandleObject *)self;
  if (h->ptr != NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Handle is already initialised");
    return -1;
  }
  h->ptr = (tc_checker *)p;
  return 0;
}

static void Handle_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  HandleObject *h = (HandleObject *)self;
  if (h->ptr != NULL) {
    tc_checker *p = h->ptr;
    h->ptr = NULL;
    p_tc_free(p);
  }
  freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
  tp_free(self);
  Py_DECREF(tp);
}

static PyObject *Handle_get_ptr(PyObject *self, void *Py_UNUSED(closure)) {
  return PyLong_FromVoidPtr(((HandleObject *)self)->ptr);
}

static PyGetSetDef Handle_getset[] = {
    {"ptr", Handle_get_ptr, NULL, "the tc_checker* address (an int)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, "Owns one tc_checker* (released with tc_free when the last reference goes)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Handle_init},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_getset, Handle_getset},
    {0, NULL},
};

static PyType_Spec Handle_spec = {
    "tokenchecker._speedups.Handle", sizeof(HandleObject), 0, Py_TPFLAGS_DEFAULT, Handle_slots,
};

/* ---- Info ----------------------------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  const tc_answer *answer; /* one reference, released with the Info */
  const tc_fields *f;      /* borrowed from the answer */
  uint64_t id;
  size_t nbytes;           /* what the memo counts for it */
  PyObject *identities;    /* frozenset of identity principals */
  PyObject *effective;     /* str, or NULL without a sub */
} InfoObject;

static PyTypeObject *Info_Type;

static void Info_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  InfoObject *info = (InfoObject *)self;
  Py_CLEAR(info->identities);
  Py_CLEAR(info->effective);
  if (info->answer != NULL) {
    const tc_answer *a = info->answer;
    info->answer = NULL;
    p_tc_answer_free(a);
  }
  freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
  tp_free(self);
  Py_DECREF(tp);
}

/* A new Info; takes over the reference to `answer` (released on failure too). */
static PyObject *info_new(const tc_answer *answer) {
  const tc_fields *f = p_tc_answer_fields(answer);
  if (f == NULL) {
    p_tc_answer_free(answer);
    PyErr_SetString(PyExc_RuntimeError, "tc_answer_fields gave NULL");
    return NULL;
  }
  allocfunc alloc = (allocfunc)PyType_GetSlot(Info_Type, Py_tp_alloc);
  InfoObject *info = (InfoObject *)alloc(Info_Type, 0);
  if (info == NULL) {
    p_tc_answer_free(answer);
    return NULL;
  }
  info->answer = answer;
  info->f = f;
  info->id = p_tc_answer_id(answer);
  /* the answer's strings, counted as its text's length (which holds them all: the Info keeps
   * the answer alive), without reading every list of the fields */
  size_t text_len = 0;
  p_tc_answer_text(answer, &text_len);
  size_t bytes = MEMO_ENTRY_OVERHEAD + text_len;
  PyObject *ids = PyFrozenSet_New(NULL);
  if (ids == NULL) goto fail;
  info->identities = ids;
  for (size_t i = 0; i < f->identities.len; i++) {
    tc_str id = f->identities.items[i];
    PyObject *p = identity_principal(id);
    if (p == NULL) goto fail;
    if (PySet_Add(ids, p) < 0) {
      Py_DECREF(p);
      goto fail;
    }
    bytes += IDENTITY_PREFIX_LEN + id.len;
    if (info->effective == NULL && f->sub.ptr != NULL && str_eq(id, f->sub)) {
      info->effective = p; /* the same str: the effective identity is one of the identities */
    } else {
      Py_DECREF(p);
    }
  }
  if (info->effective == NULL && f->sub.ptr != NULL) {
    info->effective = identity_principal(f->sub);
    if (info->effective == NULL) goto fail;
    bytes += IDENTITY_PREFIX_LEN + f->sub.len;
  }
  info->nbytes = bytes;
  return (PyObject *)info;
fail:
  Py_DECREF(info);
  return NULL;
}

#define INFO_FIELDS(self) (((InfoObject *)(self))->f)

static PyObject *Info_get_identities(PyObject *self, void *Py_UNUSED(c)) {
  return NEWREF(((InfoObject *)self)->identities);
}
static PyObject *Info_get_effective(PyObject *self, void *Py_UNUSED(c)) {
  PyObject *e = ((InfoObject *)self)->effective;
  return e ? NEWREF(e) : NEWREF(Py_None);
}
static PyObject *Info_get_id(PyObject *self, void *Py_UNUSED(c)) {
  return PyLong_FromUnsignedLongLong(((InfoObject *)self)->id);
}
static PyObject *Info_get_nbytes(PyObject *self, void *Py_UNUSED(c)) {
  return PyLong_FromSize_t(((InfoObject *)self)->nbytes);
}
static PyObject *Info_get_active(PyObject *self, void *Py_UNUSED(c)) {
  return PyBool_FromLong(INFO_FIELDS(self)->active);
}
static PyObject *Info_get_has_identity_set(PyObject *self, void *Py_UNUSED(c)) {
  return PyBool_FromLong(INFO_FIELDS(self)->has_identity_set);
}
#define STR_GETTER(field)                                                   \
  static PyObject *Info_get_##field(PyObject *self, void *Py_UNUSED(c)) { \
    return str_or_none(INFO_FIELDS(self)->field);                           \
  }
STR_GETTER(sub)
STR_GETTER(username)
STR_GETTER(name)
STR_GETTER(email)
STR_GETTER(client_id)
#undef STR_GETTER
#define TIME_GETTER(field)                                                  \
  static PyObject *Info_get_##field(PyObject *self, void *Py_UNUSED(c)) { \
    const tc_fields *f = INFO_FIELDS(self);                                 \
    if (!f->has_##field) Py_RETURN_NONE;                                    \
    return PyLong_FromLongLong((long long)f->field);                        \
  }
TIME_GETTER(exp)
TIME_GETTER(nbf)
TIME_GETTER(iat)
#undef TIME_GETTER
static PyObject *Info_get_identity_ids(PyObject *self, void *Py_UNUSED(c)) {
  return list_tuple(INFO_FIELDS(self)->identities);
}
static PyObject *Info_get_scopes(PyObject *self, void *Py_UNUSED(c)) {
  return list_frozenset(INFO_FIELDS(self)->scopes);
}
static PyObject *Info_get_scope_list(PyObject *self, void *Py_UNUSED(c)) {
  return list_tuple(INFO_FIELDS(self)->scopes);
}
static PyObject *Info_get_aud(PyObject *self, void *Py_UNUSED(c)) {
  return list_tuple(INFO_FIELDS(self)->aud);
}

static PyObject *Info_introspection(PyObject *self, PyObject *Py_UNUSED(ignored)) {
  char *json = NULL;
  tc_status st = p_tc_answer_introspection(((InfoObject *)self)->answer, &json);
  if (st != TC_OK) return raise_status(st, json);
  PyObject *s = PyUnicode_DecodeUTF8(json, (Py_ssize_t)strlen(json), "replace");
  p_tc_string_free(json);
  return s;
}

static PyObject *Info_repr(PyObject *self) {
  return PyUnicode_FromFormat("<tokenchecker Info of answer %llu>", (unsigned long long)((InfoObject *)self)->id);
}

static PyGetSetDef Info_getset[] = {
    {"identities", Info_get_identities, NULL, "frozenset of identity principals", NULL},
    {"effective_identity", Info_get_effective, NULL, "urn:globus:auth:identity:<sub>, or None", NULL},
    {"id", Info_get_id, NULL, "the answer's id (tc_answer_id)", NULL},
    {"nbytes", Info_get_nbytes, NULL, "the bytes the memo counts for this Info", NULL},
    {"active", Info_get_active, NULL, NULL, NULL},
    {"has_identity_set", Info_get_has_identity_set, NULL, NULL, NULL},
    {"sub", Info_get_sub, NULL, NULL, NULL},
    {"username", Info_get_username, NULL, NULL, NULL},
    {"name", Info_get_name, NULL, NULL, NULL},
    {"email", Info_get_email, NULL, NULL, NULL},
    {"client_id", Info_get_client_id, NULL, NULL, NULL},
    {"exp", Info_get_exp, NULL, NULL, NULL},
    {"nbf", Info_get_nbf, NULL, NULL, NULL},
    {"iat", Info_get_iat, NULL, NULL, NULL},
    {"identity_ids", Info_get_identity_ids, NULL, "tuple of identity ids, in the server's order", NULL},
    {"scopes", Info_get_scopes, NULL, "frozenset of scopes", NULL},
    {"scope_list", Info_get_scope_list, NULL, "tuple of scopes, in the server's order", NULL},
    {"aud", Info_get_aud, NULL, "tuple of audiences", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Info_methods[] = {
    {"introspection", Info_introspection, METH_NOARGS,
     "The server's whole introspection answer, as JSON text (tc_answer_introspection)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Info_slots[] = {
    {Py_tp_doc, "What a check found (immutable), built from tc_answer_fields; keeps the answer."},
    {Py_tp_dealloc, Info_dealloc},
    {Py_tp_getset, Info_getset},
    {Py_tp_methods, Info_methods},
    {Py_tp_repr, Info_repr},
    {0, NULL},
};

static PyType_Spec Info_spec = {
    "tokenchecker._speedups.Info", sizeof(InfoObject), 0, Py_TPFLAGS_DEFAULT, Info_slots,
};

/* ---- the memo ------------------------------------------------------------------------------- */
/* An open-addressing table (linear probing, backward-shift deletion) of answer id -> Info, and
 * a ring of ids in insertion order for eviction. Touched with the GIL held only. */

typedef struct {
  uint64_t id; /* 0: empty (ids start at 1) */
  InfoObject *info;
} Slot;

static Slot *table;
static size_t table_cap; /* a power of two, or 0 */
static size_t table_len;
static uint64_t *ring;
static size_t ring_cap, ring_head, ring_len;
static size_t memo_bytes;
static uint64_t memo_hits, memo_misses, memo_evictions;

static size_t slot_of(uint64_t id) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (table_cap - 1);
}

static InfoObject *memo_find(uint64_t id) {
  if (table_cap == 0) return NULL;
  for (size_t i = slot_of(id);; i = (i + 1) & (table_cap - 1)) {
    if (table[i].id == id) return table[i].info;
    if (table[i].id == 0) return NULL;
  }
}

static void table_put(Slot *t, size_t cap, uint64_t id, InfoObject *info) {
  size_t mask = cap - 1;
  size_t i = (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & mask;
  while (t[i].id != 0) i = (i + 1) & mask;
  t[i].id = id;
  t[i].info = info;
}

static int table_grow(void) {
  size_t cap = table_cap ? table_cap * 2 : 1024;
  Slot *t = PyMem_Malloc(cap * sizeof(Slot)); /* (PyMem_Calloc is not in the 3.9 limited API) */
  if (t == NULL) return -1;
  memset(t, 0, cap * sizeof(Slot));
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].id != 0) table_put(t, cap, table[i].id, table[i].info);
  PyMem_Free(table);
  table = t;
  table_cap = cap;
  return 0;
}

/* Removes id from the table; returns its Info (the table's reference) or NULL. */
static InfoObject *table_remove(uint64_t id) {
  if (table_cap == 0) return NULL;
  size_t mask = table_cap - 1;
  size_t i = slot_of(id);
  while (table[i].id != id) {
    if (table[i].id == 0) return NULL;
    i = (i + 1) & mask;
  }
  InfoObject *info = table[i].info;
  /* backward shift: move later entries of the run into the hole when their home allows */
  size_t hole = i;
  for (size_t j = (i + 1) & mask; table[j].id != 0; j = (j + 1) & mask) {
    size_t home = slot_of(table[j].id);
    /* j may move to hole when home is not in (hole, j] (cyclically) */
    int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!in_range) {
      table[hole] = table[j];
      hole = j;
    }
  }
  table[hole].id = 0;
  table[hole].info = NULL;
  table_len--;
  return info;
}

static int ring_push(uint64_t id) {
  if (ring_len == ring_cap) {
    size_t cap = ring_cap ? ring_cap * 2 : 1024;
    uint64_t *r = PyMem_Malloc(cap * sizeof(uint64_t));
    if (r == NULL) return -1;
    for (size_t i = 0; i < ring_len; i++) r[i] = ring[(ring_head + i) % ring_cap];
    PyMem_Free(ring);
    ring = r;
    ring_cap = cap;
    ring_head = 0;
  }
  ring[(ring_head + ring_len) % ring_cap] = id;
  ring_len++;
  return 0;
}

/* Evicts the oldest entry; the Infos to release are appended to `out` (released by the caller
 * once the memo is consistent: a release may run arbitrary code through the allocator). */
static InfoObject *memo_evict_one(void) {
  while (ring_len > 0) {
    uint64_t id = ring[ring_head];
    ring_head = (ring_head + 1) % ring_cap;
    ring_len--;
    InfoObject *info = table_remove(id);
    if (info != NULL) {
      memo_bytes -= info->nbytes;
      memo_evictions++;
      return info;
    }
  }
  return NULL;
}

/* A full memo admits one new entry in MEMO_ADMIT_WHEN_FULL: a working set larger than the memo
 * (say 100k distinct tokens cycling through a 16 MiB memo) then mostly passes by it instead of
 * evicting an entry on every check for nothing (oldest first out would never hit); a working
 * set that fits never meets the rule, and one that shifts gets in after a few misses. */
#define MEMO_ADMIT_WHEN_FULL 8
static unsigned memo_refused;

static void memo_insert(InfoObject *info) {
  if (memo_max_bytes == 0 || info->nbytes > memo_max_bytes) return;
  if (memo_bytes + info->nbytes > memo_max_bytes && ++memo_refused % MEMO_ADMIT_WHEN_FULL != 0) return;
  InfoObject *gone[8];
  size_t ngone = 0;
  while (memo_bytes + info->nbytes > memo_max_bytes && ring_len > 0) {
    InfoObject *old = memo_evict_one();
    if (old == NULL) break;
    if (ngone == sizeof gone / sizeof gone[0]) {
      for (size_t i = 0; i < ngone; i++) Py_DECREF(gone[i]);
      ngone = 0;
    }
    gone[ngone++] = old;
  }
  if ((table_len + 1) * 10 > table_cap * 7 && table_grow() < 0) goto out; /* no memo: fine */
  if (ring_push(info->id) < 0) goto out;
  table_put(table, table_cap, info->id, (InfoObject *)NEWREF(info));
  table_len++;
  memo_bytes += info->nbytes;
out:
  for (size_t i = 0; i < ngone; i++) Py_DECREF(gone[i]);
}

static void memo_clear(void) {
  Slot *t = table;
  size_t cap = table_cap;
  table = NULL;
  table_cap = table_len = 0;
  PyMem_Free(ring);
  ring = NULL;
  ring_cap = ring_head = ring_len = 0;
  memo_bytes = 0;
  for (size_t i = 0; i < cap; i++)
    if (t[i].id != 0) Py_DECREF(t[i].info);
  PyMem_Free(t);
}

/* The Info for an answer (new reference); takes over the reference to `answer`. */
static PyObject *info_for(const tc_answer *answer) {
  uint64_t id = p_tc_answer_id(answer);
  InfoObject *hit = memo_find(id);
  if (hit != NULL) {
    memo_hits++;
    p_tc_answer_free(answer);
    return NEWREF((PyObject *)hit);
  }
  memo_misses++;
  PyObject *info = info_new(answer);
  if (info != NULL) memo_insert((InfoObject *)info);
  return info;
}

/* ---- Policy --------------------------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  tc_policy *p;
  PyObject *principals; /* tuple of str */
  PyObject *request;    /* bytes: the request document (for tc_authorize_async) */
} PolicyObject;

static PyTypeObject *Policy_Type;

static int Policy_init(PyObject *self, PyObject *args, PyObject *kwds) {
  PyObject *request;
  if (kwds != NULL && PyDict_Size(kwds) != 0) {
    PyErr_SetString(PyExc_TypeError, "Policy(request) takes no keyword arguments");
    return -1;
  }
  if (!PyArg_UnpackTuple(args, "Policy", 1, 1, &request)) return -1;
  if (check_bound() < 0) return -1;
  PolicyObject *po = (PolicyObject *)self;
  if (po->p != NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Policy is already initialised");
    return -1;
  }
  char *buf;
  Py_ssize_t len;
  if (!PyBytes_Check(request)) {
    PyErr_SetString(PyExc_TypeError, "Policy(request): request must be bytes (a JSON document)");
    return -1;
  }
  if (PyBytes_AsStringAndSize(request, &buf, &len) < 0) return -1;
  tc_policy *p = NULL;
  char *err = NULL;
  tc_status st = p_tc_policy_new(buf, &p, &err);
  if (st != TC_OK) {
    raise_status(st, err);
    return -1;
  }
  if (err != NULL) p_tc_string_free(err);
  po->p = p;
  size_t n = p_tc_policy_len(p);
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  if (t == NULL) return -1;
  for (size_t i = 0; i < n; i++) {
    size_t plen = 0;
    const char *s = p_tc_policy_principal(p, i, &plen);
    PyObject *u = PyUnicode_DecodeUTF8(s ? s : "", (Py_ssize_t)plen, "replace");
    if (u == NULL || PyTuple_SetItem(t, (Py_ssize_t)i, u) < 0) {
      Py_DECREF(t);
      return -1;
    }
  }
  po->principals = t;
  po->request = NEWREF(request);
  return 0;
}

static void Policy_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PolicyObject *po = (PolicyObject *)self;
  Py_CLEAR(po->principals);
  Py_CLEAR(po->request);
  if (po->p != NULL) {
    tc_policy *p = po->p;
    po->p = NULL;
    p_tc_policy_free(p);
  }
  freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
  tp_free(self);
  Py_DECREF(tp);
}

static PyMemberDef Policy_members[] = {
    {"principals", T_OBJECT, offsetof(PolicyObject, principals), READONLY, "the allowed principals (tuple)"},
    {"request", T_OBJECT, offsetof(PolicyObject, request), READONLY, "the request document (bytes)"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Policy_slots[] = {
    {Py_tp_doc, "A compiled authorization request (tc_policy_new)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Policy_init},
    {Py_tp_dealloc, Policy_dealloc},
    {Py_tp_members, Policy_members},
    {0, NULL},
};

static PyType_Spec Policy_spec = {
    "tokenchecker._speedups.Policy", sizeof(PolicyObject), 0, Py_TPFLAGS_DEFAULT, Policy_slots,
};

/* ---- State (the core of AuthState) ---------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  PyObject *checker;
  PyObject *handle;
  PyObject *token;
  PyObject *scopes;
  PyObject *errors;  /* list, created on first use */
  PyObject *info;
  PyObject *error;
  PyObject *groups;
  PyObject *matched;
  PyObject *source;
  unsigned long long age_ms;
  tc_checker *ptr;   /* the handle's, when it is a Handle */
  /* an authorization's answer whose Info is not built yet (one reference): built by the first
   * read that needs it, so that an authorization alone never builds one */
  const tc_answer *pending;
} StateObject;

static PyTypeObject *State_Type;

static void state_drop_pending(StateObject *s) {
  if (s->pending != NULL) {
    const tc_answer *a = s->pending;
    s->pending = NULL;
    p_tc_answer_free(a);
  }
}

static int State_init(PyObject *self, PyObject *args, PyObject *kwds) {
  PyObject *checker, *handle, *token, *scopes;
  if (kwds != NULL && PyDict_Size(kwds) != 0) {
    PyErr_SetString(PyExc_TypeError, "AuthState(checker, handle, bearer_token, expected_scopes) takes no keywords");
    return -1;
  }
  if (!PyArg_UnpackTuple(args, "AuthState", 4, 4, &checker, &handle, &token, &scopes)) return -1;
  StateObject *s = (StateObject *)self;
  XSETREF(s->checker, NEWREF(checker));
  XSETREF(s->handle, NEWREF(handle));
  XSETREF(s->token, NEWREF(token));
  XSETREF(s->scopes, NEWREF(scopes));
  Py_CLEAR(s->errors);
  Py_CLEAR(s->info);
  Py_CLEAR(s->error);
  Py_CLEAR(s->groups);
  Py_CLEAR(s->matched);
  Py_CLEAR(s->source);
  state_drop_pending(s);
  s->age_ms = 0;
  s->ptr = Py_TYPE(handle) == Handle_Type ? ((HandleObject *)handle)->ptr : NULL;
  return 0;
}

static int State_traverse(PyObject *self, visitproc visit, void *arg) {
  StateObject *s = (StateObject *)self;
  Py_VISIT((PyObject *)Py_TYPE(self));
  Py_VISIT(s->checker);
  Py_VISIT(s->handle);
  Py_VISIT(s->token);
  Py_VISIT(s->scopes);
  Py_VISIT(s->errors);
  Py_VISIT(s->info);
  Py_VISIT(s->error);
  Py_VISIT(s->groups);
  Py_VISIT(s->matched);
  Py_VISIT(s->source);
  return 0;
}

static int State_clear(PyObject *self) {
  StateObject *s = (StateObject *)self;
  state_drop_pending(s);
  Py_CLEAR(s->checker);
  Py_CLEAR(s->handle);
  Py_CLEAR(s->token);
  Py_CLEAR(s->scopes);
  Py_CLEAR(s->errors);
  Py_CLEAR(s->info);
  Py_CLEAR(s->error);
  Py_CLEAR(s->groups);
  Py_CLEAR(s->matched);
  Py_CLEAR(s->source);
  return 0;
}

static void State_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  State_clear(self);
  freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
  tp_free(self);
  Py_DECREF(tp);
}

/* The token as the library's C string, when it can be passed as it is: a str (UTF-8 without
 * surrogates) or bytes, without a NUL inside. NULL (no exception set) otherwise. */
static const char *token_cstr(PyObject *token, Py_ssize_t *len) {
  const char *buf;
  if (PyUnicode_Check(token)) {
    buf = PyUnicode_AsUTF8AndSize(token, len);
    if (buf == NULL) {
      PyErr_Clear(); /* lone surrogates: the slow path refuses them as the library would */
      return NULL;
    }
  } else if (PyBytes_Check(token)) {
    char *b;
    if (PyBytes_AsStringAndSize(token, &b, len) < 0) {
      PyErr_Clear();
      return NULL;
    }
    buf = b;
  } else {
    return NULL;
  }
  if (memchr(buf, 0, (size_t)*len) != NULL) return NULL;
  return buf;
}

static void state_set_meta(StateObject *s, const tc_answer_meta *meta) {
  PyObject *src = source_str(meta->source);
  if (src == NULL) {
    PyErr_Clear();
  } else {
    XSETREF(s->source, src);
  }
  s->age_ms = (unsigned long long)meta->age_ms;
}

static void state_set_answer(StateObject *s, PyObject *info, const tc_answer_meta *meta) {
  state_drop_pending(s);
  XSETREF(s->info, info);
  state_set_meta(s, meta);
}

static PyObject *token_bytes(PyObject *token, const char *buf, Py_ssize_t len) {
  if (PyBytes_Check(token)) return NEWREF(token);
  return PyBytes_FromStringAndSize(buf, len);
}

/* -> Info (new reference), None (a failed check, not strict), or NULL (an exception). */
static PyObject *state_resolve(StateObject *s, PyObject *strict) {
  if (s->info != NULL) return NEWREF(s->info);
  if (s->pending != NULL) { /* what an authorization found */
    const tc_answer *a = s->pending;
    s->pending = NULL;
    PyObject *info = info_for(a);
    if (info == NULL) return NULL;
    XSETREF(s->info, NEWREF(info));
    return info;
  }
  Py_ssize_t len = 0;
  const char *buf = s->error == NULL && s->ptr != NULL && s->token != NULL ? token_cstr(s->token, &len) : NULL;
  if (buf == NULL) return PyObject_CallMethodObjArgs((PyObject *)s, str_resolve_slow, strict, NULL);
  const tc_answer *ans = NULL;
  tc_answer_meta meta = {NULL, 0};
  char *err = NULL;
  tc_status st = p_tc_try_check_answer(s->ptr, buf, &ans, &meta, &err);
  if (st == TC_OK) {
    if (err != NULL) p_tc_string_free(err);
    PyObject *info = info_for(ans);
    if (info == NULL) return NULL;
    state_set_answer(s, NEWREF(info), &meta);
    return info;
  }
  if (st == TC_WOULD_BLOCK) {
    if (err != NULL) p_tc_string_free(err);
    PyObject *tb = token_bytes(s->token, buf, len);
    if (tb == NULL) return NULL;
    PyObject *r = PyObject_CallMethodObjArgs((PyObject *)s, str_miss, tb, strict, NULL);
    Py_DECREF(tb);
    return r;
  }
  PyObject *doc = take_error(err);
  if (doc == NULL) return NULL;
  PyObject *code = PyLong_FromUnsignedLong((unsigned long)st);
  if (code == NULL) {
    Py_DECREF(doc);
    return NULL;
  }
  PyObject *r = PyObject_CallMethodObjArgs((PyObject *)s, str_fail, code, doc, strict, NULL);
  Py_DECREF(code);
  Py_DECREF(doc);
  return r;
}

static PyObject *State_resolve(PyObject *self, PyObject *args) {
  PyObject *strict = Py_False;
  if (!PyArg_UnpackTuple(args, "_resolve", 0, 1, &strict)) return NULL;
  return state_resolve((StateObject *)self, strict);
}

static PyObject *State_get_identities(PyObject *self, void *Py_UNUSED(c)) {
  StateObject *s = (StateObject *)self;
  PyObject *info = s->info != NULL ? NEWREF(s->info) : state_resolve(s, Py_False);
  if (info == NULL) return NULL;
  PyObject *out;
  if (Py_TYPE(info) == Info_Type) {
    out = NEWREF(((InfoObject *)info)->identities);
  } else if (info == Py_None) {
    out = PyFrozenSet_New(NULL);
  } else {
    out = PyObject_GetAttrString(info, "identities");
  }
  Py_DECREF(info);
  return out;
}

static PyObject *State_get_effective_identity(PyObject *self, void *Py_UNUSED(c)) {
  StateObject *s = (StateObject *)self;
  PyObject *info = s->info != NULL ? NEWREF(s->info) : state_resolve(s, Py_False);
  if (info == NULL) return NULL;
  PyObject *out;
  if (Py_TYPE(info) == Info_Type) {
    PyObject *e = ((InfoObject *)info)->effective;
    out = NEWREF(e ? e : Py_None);
  } else if (info == Py_None) {
    out = NEWREF(Py_None);
  } else {
    out = PyObject_GetAttrString(info, "effective_identity");
  }
  Py_DECREF(info);
  return out;
}

/* _authorize(policy, raising) -> bool: the token checked and the caller authorized by a
 * compiled policy from the cache; anything else goes to the subclass's _authorize_slow(policy,
 * raising, token, status, document) (token None: it encodes the token itself; status None: not
 * tried yet). */
static PyObject *state_authorize(StateObject *s, PyObject *policy, PyObject *raising) {
  PyObject *self = (PyObject *)s;
  if (Py_TYPE(policy) != Policy_Type) {
    PyErr_SetString(PyExc_TypeError, "_authorize: policy must be a tokenchecker._speedups.Policy");
    return NULL;
  }
  Py_ssize_t len = 0;
  const char *buf = s->error == NULL && s->ptr != NULL && s->token != NULL ? token_cstr(s->token, &len) : NULL;
  if (buf == NULL)
    return PyObject_CallMethodObjArgs(self, str_authorize_slow, policy, raising, Py_None, Py_None, Py_None, NULL);
  PolicyObject *po = (PolicyObject *)policy;
  const tc_answer *ans = NULL;
  tc_answer_meta meta = {NULL, 0};
  size_t matched = TC_NO_MATCH;
  char *err = NULL;
  tc_status st = p_tc_try_authorize_answer(s->ptr, buf, po->p, &ans, &meta, &matched, &err);
  if (st == TC_OK) {
    if (err != NULL) p_tc_string_free(err);
    if (s->info == NULL) { /* kept as it is: the Info is built only if something reads it */
      state_drop_pending(s);
      s->pending = ans;
    } else {
      p_tc_answer_free(ans);
    }
    state_set_meta(s, &meta);
    if (matched < (size_t)PyTuple_Size(po->principals)) {
      PyObject *m = PyTuple_GetItem(po->principals, (Py_ssize_t)matched);
      if (m == NULL) return NULL;
      XSETREF(s->matched, NEWREF(m));
    }
    Py_RETURN_TRUE;
  }
  if (st == TC_NOT_AUTHORIZED && !PyObject_IsTrue(raising)) {
    if (err != NULL) p_tc_string_free(err);
    Py_RETURN_FALSE;
  }
  PyObject *doc = take_error(err);
  if (doc == NULL) return NULL;
  PyObject *code = PyLong_FromUnsignedLong((unsigned long)st);
  PyObject *tb = token_bytes(s->token, buf, len);
  PyObject *r = NULL;
  if (code != NULL && tb != NULL)
    r = PyObject_CallMethodObjArgs(self, str_authorize_slow, policy, raising, tb, code, doc, NULL);
  Py_XDECREF(code);
  Py_XDECREF(tb);
  Py_DECREF(doc);
  return r;
}

static PyObject *State_authorize(PyObject *self, PyObject *args) {
  PyObject *policy, *raising;
  if (!PyArg_UnpackTuple(args, "_authorize", 2, 2, &policy, &raising)) return NULL;
  return state_authorize((StateObject *)self, policy, raising);
}

/* Compiled policies by (principals tuple, allow_public, allow_all_authenticated_users), made by
 * the Python factory (_checker._policy) on a miss; bounded (emptied when full). */
static PyObject *policies;
static PyObject *policy_factory;
#define POLICIES_MAX 256

static PyObject *str_public, *str_check_authorization_slow;

/* check_authorization(allowed_principals, allow_public=False, allow_all_authenticated_users=False)
 * for a list, tuple or str of principals; anything else (a set, a generator) goes to the
 * subclass's _check_authorization_slow. */
/* The last request's key and policy: a service asks with the same few lists again and again,
 * and the same principal objects then need no new key (no tuple, no hash). */
static PyObject *last_key, *last_policy;

static int same_principals(PyObject *allowed, PyObject *tuple) {
  Py_ssize_t n = PyTuple_Size(tuple);
  if (PyList_CheckExact(allowed)) {
    if (PyList_Size(allowed) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
      if (PyList_GetItem(allowed, i) != PyTuple_GetItem(tuple, i)) return 0;
    return 1;
  }
  if (PyTuple_CheckExact(allowed)) {
    if (PyTuple_Size(allowed) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
      if (PyTuple_GetItem(allowed, i) != PyTuple_GetItem(tuple, i)) return 0;
    return 1;
  }
  return 0;
}

static PyObject *State_check_authorization(PyObject *self, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"allowed_principals", "allow_public", "allow_all_authenticated_users", NULL};
  PyObject *allowed, *pub = Py_False, *all = Py_False;
  if (kwds == NULL && PyTuple_Size(args) == 1) {
    allowed = PyTuple_GetItem(args, 0);
  } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:check_authorization", kwlist, &allowed, &pub, &all)) {
    return NULL;
  }
  int allow_public = PyObject_IsTrue(pub), allow_all = PyObject_IsTrue(all);
  if (allow_public < 0 || allow_all < 0) return NULL;
  if (!allow_public && last_key != NULL && PyTuple_GetItem(last_key, 1) == Py_False &&
      PyTuple_GetItem(last_key, 2) == (allow_all ? Py_True : Py_False) &&
      same_principals(allowed, PyTuple_GetItem(last_key, 0))) {
    PyObject *policy = NEWREF(last_policy);
    PyObject *r = state_authorize((StateObject *)self, policy, Py_False);
    Py_DECREF(policy);
    return r;
  }
  PyObject *principals;
  if (PyTuple_CheckExact(allowed)) {
    principals = NEWREF(allowed);
  } else if (PyList_CheckExact(allowed)) {
    principals = PyList_AsTuple(allowed);
  } else if (PyUnicode_CheckExact(allowed)) {
    principals = PyTuple_Pack(1, allowed);
  } else {
    return PyObject_CallMethodObjArgs(self, str_check_authorization_slow, allowed, allow_public ? Py_True : Py_False,
                                      allow_all ? Py_True : Py_False, NULL);
  }
  if (principals == NULL) return NULL;
  if (allow_public) { /* the original's rule: "public" counts even for a token that fails one */
    int has = PySequence_Contains(principals, str_public);
    if (has != 0) {
      Py_DECREF(principals);
      if (has < 0) return NULL;
      Py_RETURN_TRUE;
    }
  }
  PyObject *key = Py_BuildValue("(NOO)", principals, allow_public ? Py_True : Py_False, allow_all ? Py_True : Py_False);
  if (key == NULL) return NULL;
  PyObject *policy = PyDict_GetItemWithError(policies, key); /* borrowed */
  if (policy != NULL) {
    Py_INCREF(policy);
  } else if (PyErr_Occurred()) {
    PyErr_Clear(); /* an unhashable principal: the factory refuses it */
  }
  if (policy == NULL) {
    if (policy_factory == NULL) {
      Py_DECREF(key);
      PyErr_SetString(PyExc_RuntimeError, "tokenchecker._speedups: no policy factory");
      return NULL;
    }
    policy = PyObject_CallFunctionObjArgs(policy_factory, PyTuple_GetItem(key, 0), allow_public ? Py_True : Py_False,
                                          allow_all ? Py_True : Py_False, NULL);
    if (policy == NULL) {
      Py_DECREF(key);
      return NULL;
    }
    if (PyDict_Size(policies) >= POLICIES_MAX) PyDict_Clear(policies);
    if (PyDict_SetItem(policies, key, policy) < 0) PyErr_Clear(); /* uncached: fine */
  }
  XSETREF(last_policy, NEWREF(policy));
  XSETREF(last_key, key); /* takes the reference */
  PyObject *r = state_authorize((StateObject *)self, policy, Py_False);
  Py_DECREF(policy);
  return r;
}

static PyObject *State_get_errors(PyObject *self, void *Py_UNUSED(c)) {
  StateObject *s = (StateObject *)self;
  if (s->errors == NULL) {
    s->errors = PyList_New(0);
    if (s->errors == NULL) return NULL;
  }
  return NEWREF(s->errors);
}

static int State_set_errors(PyObject *self, PyObject *value, void *Py_UNUSED(c)) {
  if (value == NULL) {
    PyErr_SetString(PyExc_AttributeError, "errors cannot be deleted");
    return -1;
  }
  XSETREF(((StateObject *)self)->errors, NEWREF(value));
  return 0;
}

static PyObject *State_get_age(PyObject *self, void *Py_UNUSED(c)) {
  return PyLong_FromUnsignedLongLong(((StateObject *)self)->age_ms);
}

static int State_set_age(PyObject *self, PyObject *value, void *Py_UNUSED(c)) {
  unsigned long long v = value == NULL ? 0 : PyLong_AsUnsignedLongLong(value);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
  ((StateObject *)self)->age_ms = v;
  return 0;
}

static PyMemberDef State_members[] = {
    {"_checker", T_OBJECT, offsetof(StateObject, checker), READONLY, NULL},
    {"_handle", T_OBJECT, offsetof(StateObject, handle), READONLY, NULL},
    {"bearer_token", T_OBJECT, offsetof(StateObject, token), READONLY, "the token (as given)"},
    {"expected_scopes", T_OBJECT, offsetof(StateObject, scopes), READONLY, "the scopes this check expects"},
    {"_info", T_OBJECT, offsetof(StateObject, info), 0, NULL},
    {"_error", T_OBJECT, offsetof(StateObject, error), 0, NULL},
    {"_groups", T_OBJECT, offsetof(StateObject, groups), 0, NULL},
    {"_matched", T_OBJECT, offsetof(StateObject, matched), 0, NULL},
    {"_source", T_OBJECT, offsetof(StateObject, source), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef State_getset[] = {
    {"identities", State_get_identities, NULL, "frozenset of identity principals (checks the token if needed)",
     NULL},
    {"effective_identity", State_get_effective_identity, NULL,
     "the caller's identity principal, or None (checks the token if needed)", NULL},
    {"errors", State_get_errors, State_set_errors, "the errors of this state's calls (list)", NULL},
    {"_age_ms", State_get_age, State_set_age, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef State_methods[] = {
    {"_resolve", State_resolve, METH_VARARGS, "_resolve(strict=False) -> Info or None"},
    {"_authorize", State_authorize, METH_VARARGS, "_authorize(policy, raising) -> bool"},
    {"check_authorization", (PyCFunction)(void (*)(void))State_check_authorization, METH_VARARGS | METH_KEYWORDS,
     "check_authorization(allowed_principals, allow_public=False, allow_all_authenticated_users=False) -> bool: "
     "the original's semantics (see AuthState)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot State_slots[] = {
    {Py_tp_doc, "The core of AuthState: its cached paths in C."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, State_init},
    {Py_tp_dealloc, State_dealloc},
    {Py_tp_traverse, State_traverse},
    {Py_tp_clear, State_clear},
    {Py_tp_members, State_members},
    {Py_tp_getset, State_getset},
    {Py_tp_methods, State_methods},
    {0, NULL},
};

static PyType_Spec State_spec = {
    "tokenchecker._speedups.State",
    sizeof(StateObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    State_slots,
};

/* ---- module functions ----------------------------------------------------------------------- */

static tc_checker *handle_ptr(PyObject *handle) {
  if (Py_TYPE(handle) != Handle_Type) {
    PyErr_SetString(PyExc_TypeError, "expected a tokenchecker._speedups.Handle");
    return NULL;
  }
  tc_checker *p = ((HandleObject *)handle)->ptr;
  if (p == NULL) PyErr_SetString(PyExc_ValueError, "the Handle holds no checker");
  return p;
}

/* (status, info or None, source or None, age_ms, error document or None) */
static PyObject *result_tuple(tc_status st, const tc_answer *ans, const tc_answer_meta *meta, char *err,
                              PyObject *matched) {
  if (st == TC_OK) {
    if (err != NULL) p_tc_string_free(err);
    PyObject *info = info_for(ans);
    if (info == NULL) return NULL;
    PyObject *src = source_str(meta->source);
    if (src == NULL) {
      Py_DECREF(info);
      return NULL;
    }
    return Py_BuildValue("(INNKO)", (unsigned int)st, info, src, (unsigned long long)meta->age_ms,
                         matched ? matched : Py_None);
  }
  PyObject *doc = take_error(err);
  if (doc == NULL) return NULL;
  return Py_BuildValue("(IOOKN)", (unsigned int)st, Py_None, Py_None, 0ULL, doc);
}

static PyObject *mod_check(PyObject *Py_UNUSED(m), PyObject *args) {
  PyObject *handle;
  const char *token;
  Py_ssize_t len;
  int block;
  if (!PyArg_ParseTuple(args, "Oy#p:check", &handle, &token, &len, &block)) return NULL;
  if (check_bound() < 0) return NULL;
  tc_checker *ptr = handle_ptr(handle);
  if (ptr == NULL) return NULL;
  if ((Py_ssize_t)strlen(token) != len) {
    PyErr_SetString(PyExc_ValueError, "check: the token holds a NUL byte");
    return NULL;
  }
  const tc_answer *ans = NULL;
  tc_answer_meta meta = {NULL, 0};
  char *err = NULL;
  tc_status st;
  if (block) {
    /* the args tuple keeps the handle (and so the checker) alive during the call */
    Py_BEGIN_ALLOW_THREADS
    st = p_tc_check_answer(ptr, token, &ans, &meta, &err);
    Py_END_ALLOW_THREADS
  } else {
    st = p_tc_try_check_answer(ptr, token, &ans, &meta, &err);
  }
  return result_tuple(st, ans, &meta, err, NULL);
}

static PyObject *mod_authorize(PyObject *Py_UNUSED(m), PyObject *args) {
  PyObject *handle, *policy;
  const char *token;
  Py_ssize_t len;
  int block;
  if (!PyArg_ParseTuple(args, "Oy#Op:authorize", &handle, &token, &len, &policy, &block)) return NULL;
  if (check_bound() < 0) return NULL;
  tc_checker *ptr = handle_ptr(handle);
  if (ptr == NULL) return NULL;
  if (Py_TYPE(policy) != Policy_Type) {
    PyErr_SetString(PyExc_TypeError, "authorize: expected a tokenchecker._speedups.Policy");
    return NULL;
  }
  if ((Py_ssize_t)strlen(token) != len) {
    PyErr_SetString(PyExc_ValueError, "authorize: the token holds a NUL byte");
    return NULL;
  }
  PolicyObject *po = (PolicyObject *)policy;
  const tc_answer *ans = NULL;
  tc_answer_meta meta = {NULL, 0};
  size_t matched = TC_NO_MATCH;
  char *err = NULL;
  tc_status st;
  if (block) {
    Py_BEGIN_ALLOW_THREADS
    st = p_tc_authorize_answer(ptr, token, po->p, &ans, &meta, &matched, &err);
    Py_END_ALLOW_THREADS
  } else {
    st = p_tc_try_authorize_answer(ptr, token, po->p, &ans, &meta, &matched, &err);
  }
  PyObject *m = NULL;
  if (st == TC_OK && matched < (size_t)PyTuple_Size(po->principals))
    m = PyTuple_GetItem(po->principals, (Py_ssize_t)matched);
  return result_tuple(st, ans, &meta, err, m);
}

static PyObject *mod_bind(PyObject *Py_UNUSED(m), PyObject *args) {
  PyObject *symbols, *factory;
  unsigned long long max_bytes;
  if (!PyArg_ParseTuple(args, "O!KO:bind", &PyDict_Type, &symbols, &max_bytes, &factory)) return NULL;
  if (!PyCallable_Check(factory)) {
    PyErr_SetString(PyExc_TypeError, "bind: the error factory must be callable");
    return NULL;
  }
#define LOOKUP(name)                                                                      \
  {                                                                                       \
    PyObject *a = PyDict_GetItemString(symbols, #name);                                   \
    if (a == NULL) {                                                                      \
      PyErr_SetString(PyExc_KeyError, "bind: the library's " #name " is missing");        \
      return NULL;                                                                        \
    }                                                                                     \
    void *addr = PyLong_AsVoidPtr(a);                                                     \
    if (addr == NULL) {                                                                   \
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bind: NULL " #name);      \
      return NULL;                                                                        \
    }                                                                                     \
    _Static_assert(sizeof(p_##name) == sizeof(addr), "function and data pointers differ"); \
    memcpy(&p_##name, &addr, sizeof addr);                                                \
  }
  TC_FUNCS(LOOKUP)
#undef LOOKUP
  uint32_t abi = p_tc_abi_version();
  if (abi != TOKENCHECKER_ABI_VERSION) {
    PyErr_Format(PyExc_ImportError,
                 "tokenchecker._speedups was built for C ABI generation %d, the library has %u",
                 TOKENCHECKER_ABI_VERSION, (unsigned int)abi);
    return NULL;
  }
  if (bound && (size_t)max_bytes != memo_max_bytes) memo_clear();
  memo_max_bytes = (size_t)max_bytes;
  XSETREF(error_factory, NEWREF(factory));
  bound = 1;
  Py_RETURN_NONE;
}

static PyObject *mod_set_policy_factory(PyObject *Py_UNUSED(m), PyObject *factory) {
  if (!PyCallable_Check(factory)) {
    PyErr_SetString(PyExc_TypeError, "set_policy_factory: not callable");
    return NULL;
  }
  XSETREF(policy_factory, NEWREF(factory));
  PyDict_Clear(policies);
  Py_CLEAR(last_key);
  Py_CLEAR(last_policy);
  Py_RETURN_NONE;
}

static PyObject *mod_memo_clear(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
  memo_clear();
  Py_RETURN_NONE;
}

static PyObject *mod_memo_stats(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
  return Py_BuildValue("{s:n,s:n,s:n,s:i,s:K,s:K,s:K}", "entries", (Py_ssize_t)table_len, "bytes",
                       (Py_ssize_t)memo_bytes, "max_bytes", (Py_ssize_t)memo_max_bytes, "entry_overhead",
                       MEMO_ENTRY_OVERHEAD, "hits", (unsigned long long)memo_hits, "misses",
                       (unsigned long long)memo_misses, "evictions", (unsigned long long)memo_evictions);
}

static PyMethodDef module_methods[] = {
    {"bind", mod_bind, METH_VARARGS,
     "bind(symbols, memo_max_bytes, error_factory): the library's function addresses (name -> int, "
     "from ctypes' handle), the memo's bound, errors.from_status."},
    {"check", mod_check, METH_VARARGS,
     "check(handle, token, block) -> (status, info, source, age_ms, error document): tc_check_answer "
     "(GIL released) when block, else tc_try_check_answer."},
    {"authorize", mod_authorize, METH_VARARGS,
     "authorize(handle, token, policy, block) -> (status, info, source, age_ms, matched or error document)."},
    {"memo_clear", mod_memo_clear, METH_NOARGS, "Empties the answer memo (after fork, in the child)."},
    {"set_policy_factory", mod_set_policy_factory, METH_O,
     "set_policy_factory(f): f(principals, allow_public, allow_all_authenticated_users) -> Policy, called by "
     "check_authorization for a request it has not compiled yet."},
    {"memo_stats", mod_memo_stats, METH_NOARGS, "The memo's entries, bytes, bound and counters."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "tokenchecker._speedups",
    "The hot paths of the tokenchecker binding in C (see _speedups.c).",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static PyTypeObject *make_type(PyObject *m, PyType_Spec *spec, const char *name) {
  PyTypeObject *t = (PyTypeObject *)PyType_FromSpec(spec);
  if (t == NULL) return NULL;
  if (PyModule_AddObject(m, name, NEWREF((PyObject *)t)) < 0) {
    Py_DECREF(t);
    Py_DECREF(t);
    return NULL;
  }
  return t;
}

PyMODINIT_FUNC PyInit__speedups(void) {
  PyObject *m = PyModule_Create(&module_def);
  if (m == NULL) return NULL;
  if ((Handle_Type = make_type(m, &Handle_spec, "Handle")) == NULL ||
      (Info_Type = make_type(m, &Info_spec, "Info")) == NULL ||
      (Policy_Type = make_type(m, &Policy_spec, "Policy")) == NULL ||
      (State_Type = make_type(m, &State_spec, "State")) == NULL)
    goto fail;
  if ((str_miss = PyUnicode_InternFromString("_miss")) == NULL ||
      (str_fail = PyUnicode_InternFromString("_fail")) == NULL ||
      (str_resolve_slow = PyUnicode_InternFromString("_resolve_slow")) == NULL ||
      (str_authorize_slow = PyUnicode_InternFromString("_authorize_slow")) == NULL ||
      (str_check_authorization_slow = PyUnicode_InternFromString("_check_authorization_slow")) == NULL ||
      (str_public = PyUnicode_InternFromString("public")) == NULL || (policies = PyDict_New()) == NULL)
    goto fail;
  if (PyModule_AddIntConstant(m, "ABI_VERSION", TOKENCHECKER_ABI_VERSION) < 0 ||
      PyModule_AddIntConstant(m, "MEMO_ENTRY_OVERHEAD", MEMO_ENTRY_OVERHEAD) < 0)
    goto fail;
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
