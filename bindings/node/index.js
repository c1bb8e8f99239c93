'use strict';
// Node.js binding of tokenchecker: a thin layer over the C addon (src/addon.c).
//
// The addon returns `[status, json]` when it knows the answer at once (a cache hit through
// tc_try_check, an invalid argument) and otherwise calls back later, exactly once, with
// `(status, json)` from the library's own runtime through one threadsafe function.
//
// check() goes through `checkCached` first: a cached success comes back as the frozen object
// `decodeCheckResult` made for that result document (memoised by the addon, keyed by the
// document's bytes, never by the token), plus the cache source and age in `scratch`; check()
// then copies it into a fresh AuthState without any JSON parsing.

const path = require('path');

function loadNative() {
  const override = process.env.TOKENCHECKER_ADDON;
  const candidates = override
    ? [path.resolve(override)]
    : [
        path.join(__dirname, 'build', 'Release', 'tokenchecker.node'),
        path.join(__dirname, 'build', 'Debug', 'tokenchecker.node'),
      ];
  let firstError;
  for (const file of candidates) {
    try {
      return require(file);
    } catch (e) {
      if (e && e.code === 'MODULE_NOT_FOUND' && !override) {
        firstError = firstError || e;
        continue;
      }
      throw e;
    }
  }
  const err = new Error(
    'tokenchecker: the native addon is not built. Run `cargo build --release -p tokenchecker` ' +
      'at the repository root, then `npm run build` in bindings/node.',
  );
  err.code = 'TC_ADDON_NOT_BUILT';
  err.cause = firstError;
  throw err;
}

const native = loadNative();

/** Status numbers of the C library, plus the binding's own TC_CLOSED (-1). */
const Status = Object.freeze({
  TC_OK: 0,
  TC_INVALID_ARGUMENT: 1,
  TC_INVALID_CONFIG: 2,
  TC_INACTIVE_TOKEN: 3,
  TC_INSUFFICIENT_SCOPE: 4,
  TC_WRONG_AUDIENCE: 5,
  TC_TOKEN_EXPIRED: 6,
  TC_NOT_AUTHORIZED: 7,
  TC_CREDENTIALS_REJECTED: 8,
  TC_AUTH_UNAVAILABLE: 9,
  TC_PANIC: 10,
  TC_WOULD_BLOCK: 11,
  TC_CLOSED: -1,
});

const ADDON_CLOSED = 0xffffffff; // what the addon reports for a closed checker

class TokenCheckerError extends Error {
  /**
   * @param {string} code   stable code: 'TC_INACTIVE_TOKEN', …, or 'TC_CLOSED'
   * @param {string} message
   * @param {number} status the C status number (-1 for TC_CLOSED)
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'TokenCheckerError';
    this.code = code;
    this.status = status;
  }
}

function closedError() {
  return new TokenCheckerError('TC_CLOSED', 'the checker is closed', Status.TC_CLOSED);
}

function invalidArgument(message) {
  return new TokenCheckerError('TC_INVALID_ARGUMENT', message, Status.TC_INVALID_ARGUMENT);
}

function errorFrom(status, json, what) {
  if (status === ADDON_CLOSED) return closedError();
  let code;
  let message;
  if (typeof json === 'string') {
    try {
      const doc = JSON.parse(json);
      if (doc && doc.error) {
        code = doc.error.code;
        message = doc.error.message;
      }
    } catch {
      // fall through to the status name
    }
  }
  code = code || native.statusName(status);
  return new TokenCheckerError(code, message || (what ? `${what} failed: ${code}` : code), status);
}

// ---- result shapes ----------------------------------------------------------------------------

function toAuthState(d) {
  const state = {
    active: d.active,
    sub: d.sub ?? null,
    effectiveIdentity: d.effective_identity ?? null,
    identities: d.identities,
    username: d.username ?? null,
    name: d.name ?? null,
    email: d.email ?? null,
    clientId: d.client_id ?? null,
    scopes: d.scopes,
    aud: d.aud,
    exp: d.exp ?? null,
    nbf: d.nbf ?? null,
    iat: d.iat ?? null,
    groups: d.groups ?? null,
    groupsStatus: d.groups_status,
    groupsError: d.groups_error ?? null,
    principals: d.principals,
    cache: { source: d.cache.source, ageMs: d.cache.age_ms },
  };
  if (d.authorization) {
    state.authorization = {
      authorized: d.authorization.authorized,
      matched: d.authorization.matched,
    };
  }
  return state;
}

// ---- the memoised fast path of check() --------------------------------------------------------

/** Cache sources, in the addon's order (src/addon.c SOURCES). */
const SOURCES = Object.freeze(['network', 'coalesced', 'memory', 'near', 'redis', 'memcached', 'stale']);

/** checkCached's out-parameters: [cache age in ms, source index, memoised?]. Never exported. */
const scratch = new Float64Array(3);

/**
 * Called by the addon for a result document its memo does not hold. With `keep`, the object
 * it returns becomes the memo's, shared by every later check that renders the same document:
 * it is frozen, never handed out, and only copied from (see stateFrom). Without, it is this
 * call's AuthState.
 */
function decodeCheckResult(json, keep) {
  const s = toAuthState(JSON.parse(json));
  if (!keep) return s;
  s.cache = null;
  return Object.freeze(s);
}

const copy = (a) => (Array.isArray(a) ? a.slice() : a);

/**
 * A fresh AuthState from a memoised template: its own object, its own arrays (slicing a small
 * unfrozen array costs a few ns; the caller may modify the result as before) and its own cache.
 */
function stateFrom(t, ageMs, source) {
  return {
    active: t.active,
    sub: t.sub,
    effectiveIdentity: t.effectiveIdentity,
    identities: copy(t.identities),
    username: t.username,
    name: t.name,
    email: t.email,
    clientId: t.clientId,
    scopes: copy(t.scopes),
    aud: copy(t.aud),
    exp: t.exp,
    nbf: t.nbf,
    iat: t.iat,
    groups: copy(t.groups),
    groupsStatus: t.groupsStatus,
    groupsError: t.groupsError,
    principals: copy(t.principals),
    cache: { source: SOURCES[source], ageMs },
  };
}

function toDependentToken(d) {
  return {
    accessToken: d.access_token,
    scope: d.scope,
    resourceServer: d.resource_server,
    tokenType: d.token_type,
    expiresAt: d.expires_at,
    expiresIn: d.expires_in,
  };
}

function settle(status, json, resolve, reject, shape, what) {
  if (status !== 0) {
    reject(errorFrom(status, json, what));
    return;
  }
  let doc;
  try {
    doc = shape ? shape(JSON.parse(json)) : undefined;
  } catch (e) {
    reject(new TokenCheckerError('TC_PANIC', `cannot read the library's answer: ${e.message}`, Status.TC_PANIC));
    return;
  }
  resolve(doc);
}

// ---- configuration ----------------------------------------------------------------------------

function snake(key) {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * camelCase options -> the library's snake_case keys. Keys already in snake_case pass through;
 * unknown keys are passed on too, so the library names them in its TC_INVALID_CONFIG error.
 */
function configToJson(config) {
  if (typeof config === 'string') return config;
  if (!isPlainObject(config)) {
    throw new TokenCheckerError(
      'TC_INVALID_CONFIG',
      'the configuration must be an object or a JSON string',
      Status.TC_INVALID_CONFIG,
    );
  }
  const out = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    const k = snake(key);
    if (k === 'cache_config' && isPlainObject(value)) {
      const cache = {};
      for (const [ck, cv] of Object.entries(value)) {
        if (cv !== undefined) cache[snake(ck)] = cv;
      }
      out[k] = cache;
    } else {
      out[k] = value;
    }
  }
  return JSON.stringify(out);
}

// ---- the checker ------------------------------------------------------------------------------

const kHandle = Symbol('tokenchecker.handle');
const AUTHORIZE_OPTIONS = new Set(['allowPublic', 'allowAllAuthenticatedUsers']);

function authorizeRequest(allowedPrincipals, options) {
  if (allowedPrincipals == null || typeof allowedPrincipals === 'string' ||
      typeof allowedPrincipals[Symbol.iterator] !== 'function') {
    throw invalidArgument('allowedPrincipals must be an array of principal strings');
  }
  const opts = options == null ? {} : options;
  if (!isPlainObject(opts)) throw invalidArgument('the authorize options must be an object');
  for (const key of Object.keys(opts)) {
    if (!AUTHORIZE_OPTIONS.has(key)) {
      throw invalidArgument(`unknown authorize option '${key}' (allowPublic, allowAllAuthenticatedUsers)`);
    }
    if (opts[key] !== undefined && typeof opts[key] !== 'boolean') {
      throw invalidArgument(`authorize option '${key}' must be true or false`);
    }
  }
  return JSON.stringify({
    allowed_principals: Array.from(allowedPrincipals),
    allow_public: opts.allowPublic === true,
    allow_all_authenticated_users: opts.allowAllAuthenticatedUsers === true,
  });
}

class TokenChecker {
  #handle;
  #closed = false;

  /**
   * Creates a checker. `config` is an options object (camelCase) or a raw JSON string given to
   * the library verbatim. Throws a TokenCheckerError (TC_INVALID_CONFIG,
   * TC_CREDENTIALS_REJECTED, …). With verifyCredentials (the default) this blocks for one
   * introspection: use `await TokenChecker.create(config)` to keep the event loop free.
   */
  constructor(config) {
    if (config !== null && typeof config === 'object' && config[kHandle] !== undefined) {
      this.#handle = config[kHandle];
      return;
    }
    const answer = native.create(configToJson(config));
    if (answer[0] !== 0) throw errorFrom(answer[0], answer[1]);
    this.#handle = answer[1];
  }

  /** Like the constructor, but runs the library's creation (and credential check) off the event loop. */
  static create(config) {
    return new Promise((resolve, reject) => {
      const answer = native.createAsync(configToJson(config), (status, value) => {
        if (status !== 0) reject(errorFrom(status, value));
        else resolve(new TokenChecker({ [kHandle]: value }));
      });
      if (answer !== undefined) reject(errorFrom(answer[0], answer[1]));
    });
  }

  /** Process-wide counters of the library (its snake_case document, as is). */
  static stats() {
    return stats();
  }

  /** The library's version. */
  static version() {
    return version();
  }

  #live() {
    if (this.#closed) throw closedError();
    return this.#handle;
  }

  /** Whether close() was called. */
  get closed() {
    return this.#closed;
  }

  /** Operations of this checker still in flight. */
  get inFlight() {
    return native.inFlight(this.#handle);
  }

  /**
   * Checks a token. Resolves to an AuthState (a new object on every call); rejects with a
   * TokenCheckerError. Answers from the in-process cache synchronously (the promise is already
   * settled; a success is decoded through the result memo, see README.md), else asynchronously
   * on the library's runtime.
   */
  check(token) {
    if (this.#closed) return Promise.reject(closedError());
    let answer;
    try {
      answer = native.checkCached(this.#handle, token, scratch, decodeCheckResult);
    } catch (e) {
      return Promise.reject(e);
    }
    if (answer === undefined) return this.#checkAsync(token);
    if (!Array.isArray(answer)) {
      return Promise.resolve(scratch[2] === 1 ? stateFrom(answer, scratch[0], scratch[1]) : answer);
    }
    return new Promise((resolve, reject) => settle(answer[0], answer[1], resolve, reject, toAuthState));
  }

  /** A check that is not cached: on the library's runtime. */
  #checkAsync(token) {
    return new Promise((resolve, reject) => {
      const answer = native.checkAsync(this.#live(), token, (status, json) =>
        settle(status, json, resolve, reject, toAuthState),
      );
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, toAuthState);
    });
  }

  /**
   * Checks the token, then whether the caller is one of `allowedPrincipals`
   * ('urn:globus:auth:identity:…', 'urn:globus:groups:id:…', 'public', 'all_authenticated_users').
   * Resolves to an AuthState with `authorization: {authorized: true, matched}`; rejects with
   * TC_NOT_AUTHORIZED when nothing matched.
   */
  authorize(token, allowedPrincipals, options) {
    return new Promise((resolve, reject) => {
      const handle = this.#live();
      const request = authorizeRequest(allowedPrincipals, options);
      const answer = native.authorize(handle, token, request, (status, json) =>
        settle(status, json, resolve, reject, toAuthState),
      );
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, toAuthState);
    });
  }

  /**
   * Checks the token, then gets a dependent token for `scope` (a scope string or a resource
   * server name). The result holds a secret.
   */
  dependentToken(token, scope) {
    return new Promise((resolve, reject) => {
      const answer = native.dependentToken(this.#live(), token, scope, (status, json) =>
        settle(status, json, resolve, reject, toDependentToken),
      );
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, toDependentToken);
    });
  }

  /**
   * Removes everything cached for one token from every cache layer. Runs on libuv's thread
   * pool (it may touch a shared Redis/Memcached backend), so it never blocks the event loop.
   */
  purge(token) {
    return new Promise((resolve, reject) => {
      const answer = native.purge(this.#live(), token, (status, json) =>
        settle(status, json, resolve, reject, null, 'purge'),
      );
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, null, 'purge');
    });
  }

  /** Removes everything cached for tokens of one identity (id or identity principal). */
  purgeIdentity(identityId) {
    return new Promise((resolve, reject) => {
      const answer = native.purgeIdentity(this.#live(), identityId, (status, json) =>
        settle(status, json, resolve, reject, null, 'purgeIdentity'),
      );
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, null, 'purgeIdentity');
    });
  }

  /**
   * Releases the checker. Idempotent. Calls already started settle normally (the library is
   * freed once the last of them is done); later calls reject with code 'TC_CLOSED'.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    native.close(this.#handle);
  }

  /**
   * An Express-compatible middleware `(req, res, next)`; also usable with a plain
   * `http.createServer` handler (next is optional; the returned promise resolves to true when
   * the request may proceed, false when an error response was sent). See README.md.
   */
  middleware(options) {
    return makeMiddleware(this, options);
  }
}

// ---- middleware -------------------------------------------------------------------------------

const MIDDLEWARE_OPTIONS = new Set([
  'allowedPrincipals',
  'allowPublic',
  'allowAllAuthenticatedUsers',
  'realm',
  'property',
]);

// RFC 6750 b64token
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

function httpStatusFor(code) {
  switch (code) {
    case 'TC_INACTIVE_TOKEN':
    case 'TC_TOKEN_EXPIRED':
    case 'TC_WRONG_AUDIENCE':
    case 'TC_INSUFFICIENT_SCOPE':
    case 'TC_INVALID_ARGUMENT':
    case 'TC_MISSING_TOKEN':
    case 'TC_INVALID_REQUEST':
      return 401;
    case 'TC_NOT_AUTHORIZED':
      return 403;
    case 'TC_AUTH_UNAVAILABLE':
    case 'TC_CLOSED':
      return 503;
    default: // TC_CREDENTIALS_REJECTED (our own misconfiguration), TC_PANIC, …
      return 500;
  }
}

function bearerError(code) {
  switch (code) {
    case 'TC_MISSING_TOKEN':
      return null;
    case 'TC_INVALID_REQUEST':
      return 'invalid_request';
    case 'TC_INSUFFICIENT_SCOPE':
      return 'insufficient_scope';
    default:
      return 'invalid_token';
  }
}

function quote(s) {
  return `"${String(s).replace(/["\\]/g, '\\$&')}"`;
}

function sendError(res, realm, code, message) {
  const status = httpStatusFor(code);
  if (res.headersSent || res.writableEnded) return;
  const body = JSON.stringify({ error: { code, message } });
  res.statusCode = status;
  if (status === 401) {
    const error = bearerError(code);
    res.setHeader('WWW-Authenticate', `Bearer realm=${quote(realm)}${error ? `, error=${quote(error)}` : ''}`);
  }
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

function makeMiddleware(checker, options) {
  const opts = options == null ? {} : options;
  if (!isPlainObject(opts)) throw invalidArgument('the middleware options must be an object');
  for (const key of Object.keys(opts)) {
    if (!MIDDLEWARE_OPTIONS.has(key)) {
      throw invalidArgument(
        `unknown middleware option '${key}' (${[...MIDDLEWARE_OPTIONS].join(', ')})`,
      );
    }
  }
  const realm = opts.realm === undefined ? 'api' : String(opts.realm);
  const property = opts.property === undefined ? 'authState' : String(opts.property);
  let principals = null;
  let authorizeOptions;
  if (opts.allowedPrincipals != null) {
    authorizeRequest(opts.allowedPrincipals, {
      allowPublic: opts.allowPublic,
      allowAllAuthenticatedUsers: opts.allowAllAuthenticatedUsers,
    }); // validates now, not per request
    principals = Array.from(opts.allowedPrincipals);
    authorizeOptions = {
      allowPublic: opts.allowPublic === true,
      allowAllAuthenticatedUsers: opts.allowAllAuthenticatedUsers === true,
    };
  }

  const proceed = (req, next, state) => {
    req[property] = state;
    if (typeof next === 'function') {
      try {
        next();
      } catch (e) {
        // Behave like a throw from any callback: don't swallow it into the promise.
        process.nextTick(() => {
          throw e;
        });
      }
    }
    return true;
  };

  return function tokencheckerMiddleware(req, res, next) {
    const header = req.headers && req.headers.authorization;
    if (typeof header !== 'string' || !/^Bearer(\s|$)/i.test(header)) {
      sendError(res, realm, 'TC_MISSING_TOKEN', 'an Authorization: Bearer <token> header is required');
      return Promise.resolve(false);
    }
    const m = BEARER.exec(header);
    if (!m) {
      sendError(res, realm, 'TC_INVALID_REQUEST', "malformed Authorization header: expected 'Bearer <token>'");
      return Promise.resolve(false);
    }
    const token = m[1];
    const pending = principals
      ? checker.authorize(token, principals, authorizeOptions)
      : checker.check(token);
    return pending.then(
      (state) => proceed(req, next, state),
      (err) => {
        const code = err && err.code ? err.code : 'TC_PANIC';
        sendError(res, realm, code, err && err.message ? err.message : String(err));
        return false;
      },
    );
  };
}

// ---- module functions -------------------------------------------------------------------------

/** Process-wide counters of the library: its JSON document, snake_case keys as documented in C. */
function stats() {
  const answer = native.stats();
  if (answer[0] !== 0) throw errorFrom(answer[0], answer[1]);
  return JSON.parse(answer[1]);
}

/** The C library's version ("MAJOR.MINOR.PATCH"). */
function version() {
  return native.version();
}

/** Asynchronous library calls in flight in this thread (all checkers). */
function inFlight() {
  return native.inFlight();
}

const MEMO_OPTIONS = new Set(['maxEntries', 'maxBytes']);

/**
 * The memo of check()'s cached path in this thread (shared by its checkers): its statistics
 * `{maxEntries, maxBytes, entries, bytes, hits, misses, evictions}`. With options, first sets
 * new bounds and empties it: `maxEntries` (default 4096; 0 turns the memo off) and `maxBytes`,
 * the longest result document memoised (default 8192).
 */
function resultMemo(options) {
  if (options === undefined) return native.memo();
  if (!isPlainObject(options)) throw invalidArgument('the resultMemo options must be an object');
  for (const key of Object.keys(options)) {
    if (!MEMO_OPTIONS.has(key)) throw invalidArgument(`unknown resultMemo option '${key}' (maxEntries, maxBytes)`);
  }
  try {
    return native.memo(options.maxEntries, options.maxBytes);
  } catch (e) {
    throw invalidArgument(e.message);
  }
}

module.exports = {
  TokenChecker,
  TokenCheckerError,
  Status,
  stats,
  version,
  inFlight,
  resultMemo,
  // internal, for tests
  _native: native,
  _configToJson: configToJson,
};
