'use strict';
// Node.js binding of tokenchecker: a thin layer over the C addon (src/addon.c).
//
// The addon returns `[status, json]` when it knows the answer at once (a cached failure, an
// invalid argument) and otherwise calls back later, exactly once, with `(status, json)` from
// the library's own runtime through one threadsafe function.
//
// check() goes through `checkAnswer` first (tc_try_check_answer): a cached success leaves the
// answer's id, source and age in `native.answerOut` and returns nothing else. The answer memo
// below maps the id (unique per cached answer, never reused) to the frozen object decoded once
// from the answer's stable text; check() copies it into a fresh AuthState without any parsing.

const path = require('path');

function loadNative() {
  const override = process.env.TOKENCHECKER_ADDON;
  const candidates = override
    ? [path.resolve(override)]
    : [
        // A source build (npm run build, or the install script when no prebuilt addon fits).
        path.join(__dirname, 'build', 'Release', 'tokenchecker.node'),
        path.join(__dirname, 'build', 'Debug', 'tokenchecker.node'),
        // The npm package's prebuilt addon, the library linked in (scripts/prebuild.js).
        path.join(__dirname, 'prebuilds', `${process.platform}-${process.arch}`, 'tokenchecker.node'),
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
    `tokenchecker: the native addon is not built, and this package has no prebuilt one for ${process.platform}-` +
      `${process.arch}. In a checkout: \`cargo build --release -p tokenchecker\` at the repository root, then ` +
      '`npm run build` in bindings/node; in an installed package: `npm rebuild tokenchecker` with the library ' +
      'installed (TOKENCHECKER_LIB_DIR, or pkg-config) and a C compiler (README.md).',
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

// ---- the answer memo of check() ---------------------------------------------------------------
//
// Per thread (module state: each worker loads its own), shared by the thread's checkers. Keys
// are answer ids, values frozen templates decoded from the answer's stable text; nothing in it
// is ever handed out (stateFrom copies). It never answers by itself: every check() still asks
// the library, which gives the id, so expiry, purges and failures are the library's. Bounded
// (maxEntries, default 4096); replacement is FIFO (a ring of ids); once full a new id is admitted
// one time in 16, at random, so a working set larger than the bound keeps most of it useful
// instead of churning. A purge or refetch gives a new id: the old entry is simply never hit
// again and leaves in its turn (purge()/purgeIdentity() empty the memo anyway: "forget").

/** Cache sources, in the addon's order (src/addon.c SOURCES): answerOut[1] indexes this. */
const SOURCES = Object.freeze(['network', 'coalesced', 'memory', 'near', 'redis', 'memcached', 'stale']);
const IDENTITY_PREFIX = 'urn:globus:auth:identity:';

/** [answer id (0: not cached), source index, age in ms], written by native.checkAnswer. */
const out = native.answerOut;

const memo = {
  map: new Map(), // answer id -> frozen template
  ring: [], // the map's ids in insertion order, from `hand` (FIFO replacement)
  hand: 0,
  maxEntries: 4096,
  maxBytes: 8192,
  bytes: 0,
  hits: 0,
  misses: 0,
  evictions: 0,
};
const kBytes = Symbol('bytes'); // a template's stable-text length in bytes

function memoClear() {
  memo.map.clear();
  memo.ring = [];
  memo.hand = 0;
  memo.bytes = 0;
}

/** An AuthState (without cache) from an answer's stable text (see tc_answer_text). */
function fromAnswer(d) {
  // The stable text is the result document without its derived and volatile members: derive
  // them and shape it as any result (once per answer id, never on a hit).
  const sub = d.sub ?? null;
  const state = toAuthState({
    ...d,
    effective_identity: sub === null ? null : IDENTITY_PREFIX + sub,
    principals: d.identities.map((i) => IDENTITY_PREFIX + i),
    groups_status: 'not_fetched',
    cache: {},
  });
  state.cache = null;
  return state;
}

/**
 * The AuthState for the answer checkAnswer just gave (id, source and age in `out`), which the
 * memo does not hold: decoded from its stable text (fetched from the addon only now); its
 * template is kept when admitted, else the decoded state is handed out as is.
 */
function memoMiss(id) {
  memo.misses++;
  const text = native.answerText();
  const s = fromAnswer(JSON.parse(text));
  const bytes = Buffer.byteLength(text);
  const m = memo.map;
  if (memo.maxEntries === 0 || bytes > memo.maxBytes ||
      (m.size >= memo.maxEntries && Math.random() >= 1 / 16)) {
    s.cache = { source: SOURCES[out[1]] ?? 'unknown', ageMs: out[2] };
    return s;
  }
  if (m.size >= memo.maxEntries) {
    // the oldest entry: from the ring (a Map's iterator would skip its deleted slots, O(n))
    const oldId = memo.ring[memo.hand];
    memo.bytes -= m.get(oldId)[kBytes];
    m.delete(oldId);
    memo.ring[memo.hand] = id;
    memo.hand = memo.hand + 1 === memo.maxEntries ? 0 : memo.hand + 1;
    memo.evictions++;
  } else {
    memo.ring.push(id);
  }
  // (the arrays are this template's own, fresh from JSON.parse)
  Object.freeze(s.identities);
  Object.freeze(s.scopes);
  Object.freeze(s.aud);
  Object.freeze(s.principals);
  s[kBytes] = bytes;
  m.set(id, Object.freeze(s));
  memo.bytes += bytes;
  return stateFrom(s, out[1], out[2]);
}

function copy(a) {
  const n = a.length;
  const c = new Array(n);
  for (let i = 0; i < n; i++) c[i] = a[i];
  return c;
}

/**
 * A fresh AuthState from a memoised template: its own object, its own arrays (the caller may
 * modify the result) and its own cache. (A loop copies: `slice()` of a frozen array takes
 * V8's slow path, ~1 µs.)
 */
function stateFrom(t, source, ageMs) {
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
    groups: null,
    groupsStatus: t.groupsStatus,
    groupsError: t.groupsError,
    principals: copy(t.principals),
    cache: { source: SOURCES[source] ?? 'unknown', ageMs },
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

/**
 * The library's top-level configuration keys (snake_case), in the order of the README's table.
 * index.d.ts's TokenCheckerConfig has exactly these (camelCase), and test/lists.test.js checks
 * both against the real library and the READMEs. A key not listed still reaches the library (a
 * newer library may know it); this list only lets a TC_INVALID_CONFIG error name a misspelling.
 */
const CONFIG_KEYS = Object.freeze([
  'client_id', 'client_secret', 'expected_scopes', 'expected_audience', 'auth_url', 'groups_url',
  'scope_match', 'leeway_s', 'fetch_groups', 'verify_credentials', 'connect_timeout_ms',
  'request_timeout_ms', 'call_timeout_ms', 'max_retries', 'max_token_bytes', 'max_response_bytes',
  'max_concurrent_requests', 'stale_if_error_s', 'refresh_ahead_s', 'allow_insecure_http', 'ca_certs', 'cache_config',
]);
const KNOWN_KEYS = new Set(CONFIG_KEYS);

/**
 * camelCase -> snake_case, keeping acronyms whole: authUrl and authURL -> auth_url,
 * clientID -> client_id, nearCacheTTL -> near_cache_ttl, sslCACerts -> ssl_ca_certs. A key
 * already in snake_case is unchanged.
 */
function snake(key) {
  return key
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2') // an acronym followed by a word: CACerts -> CA_Certs
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2') // a word followed by a capital: authURL -> auth_URL
    .toLowerCase();
}

/** The camelCase spelling of a snake_case key (for messages): client_id -> clientId. */
function camel(key) {
  return key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The expected scopes of a configuration document: a list, or a space-separated string. */
function scopesOf(doc) {
  const v = isPlainObject(doc) ? doc.expected_scopes : undefined;
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  if (Array.isArray(v)) return v.filter((s) => typeof s === 'string').map((s) => s.trim()).filter(Boolean);
  return [];
}

/**
 * Whether checks fetch groups eagerly: their cached answers then carry groups, which the answer
 * handle does not, so check() takes the document path (tc_try_check, JSON.parse per call).
 */
function eagerOf(doc) {
  return isPlainObject(doc) && doc.fetch_groups === 'eager';
}

/**
 * A configuration for the library: `{json, scopes, unknown, eager}`. camelCase options become the
 * library's snake_case keys (cacheConfig's keys too); keys already in snake_case pass through;
 * unknown keys are passed on too (the library names them in its TC_INVALID_CONFIG error, or a
 * newer library knows them) and listed in `unknown` as `{option, key}` for configError. A string
 * is given to the library verbatim.
 */
function prepareConfig(config) {
  if (typeof config === 'string') {
    let doc;
    try {
      doc = JSON.parse(config);
    } catch {
      doc = undefined; // the library reports it
    }
    const unknown = isPlainObject(doc)
      ? Object.keys(doc).filter((key) => !KNOWN_KEYS.has(key)).map((key) => ({ option: key, key }))
      : [];
    return { json: config, scopes: scopesOf(doc), unknown, eager: eagerOf(doc) };
  }
  if (!isPlainObject(config)) {
    throw new TokenCheckerError(
      'TC_INVALID_CONFIG',
      'the configuration must be an object or a JSON string',
      Status.TC_INVALID_CONFIG,
    );
  }
  const out = {};
  const unknown = [];
  for (const [option, value] of Object.entries(config)) {
    if (value === undefined) continue;
    const key = snake(option);
    if (!KNOWN_KEYS.has(key)) unknown.push({ option, key });
    if (key === 'cache_config' && isPlainObject(value)) {
      const cache = {};
      for (const [ck, cv] of Object.entries(value)) {
        if (cv !== undefined) cache[snake(ck)] = cv;
      }
      out[key] = cache;
    } else {
      out[key] = value;
    }
  }
  return { json: JSON.stringify(out), scopes: scopesOf(out), unknown, eager: eagerOf(out) };
}

/** camelCase options -> the library's JSON document (see prepareConfig). */
function configToJson(config) {
  return prepareConfig(config).json;
}

function editDistance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * A creation error, naming the options the binding does not know when the library's message
 * does not: the library checks required keys first, so `clientIdd` alone would otherwise be
 * reported as "config key 'client_id' is required".
 */
function configError(err, prepared) {
  if (!(err instanceof TokenCheckerError) || err.code !== 'TC_INVALID_CONFIG' || !prepared) return err;
  const missed = prepared.unknown.filter(({ key }) => !err.message.includes(`'${key}'`));
  if (missed.length === 0) return err;
  const clip = (s) => (s.length > 64 ? `${s.slice(0, 64)}…` : s); // as the library clips
  const names = missed.map(({ option, key }) => {
    let best = null;
    let bestDistance = 3; // suggest only close spellings
    for (const known of key.length > 64 ? [] : CONFIG_KEYS) {
      const d = editDistance(key, known);
      if (d < bestDistance) {
        best = known;
        bestDistance = d;
      }
    }
    const spelled = option === key ? `'${clip(key)}'` : `'${clip(option)}' ('${clip(key)}')`;
    return best ? `${spelled}, did you mean '${option === key ? best : camel(best)}'?` : spelled;
  });
  const what = missed.length === 1 ? 'unknown config key' : 'unknown config keys';
  return new TokenCheckerError(err.code, `${what} ${names.join('; ')} (${err.message})`, err.status);
}

// ---- configuration from the environment -------------------------------------------------------

/**
 * The variables TokenChecker.fromEnv reads (the ones the CLI reads), in the order documented,
 * with the library key each sets. TC_SCOPES is space-separated.
 */
const ENV_KEYS = Object.freeze([
  ['TC_CLIENT_ID', 'client_id'],
  ['TC_CLIENT_SECRET', 'client_secret'],
  ['TC_SCOPES', 'expected_scopes'],
  ['TC_AUTH_URL', 'auth_url'],
  ['TC_GROUPS_URL', 'groups_url'],
]);
const REQUIRED_ENV = new Set(['client_id', 'client_secret', 'expected_scopes']);

/**
 * fromEnv's configuration: the environment's keys (an empty variable counts as unset) overlaid
 * by the explicit options (camelCase or snake_case; `undefined` is "not given", anything else,
 * null included, wins). Throws TC_INVALID_CONFIG naming the missing required variables.
 */
function envConfig(options, env = process.env) {
  if (options === undefined || options === null) options = {};
  if (!isPlainObject(options)) {
    throw new TokenCheckerError('TC_INVALID_CONFIG', 'the fromEnv options must be an object', Status.TC_INVALID_CONFIG);
  }
  const given = new Map(); // library key -> explicit value
  for (const [option, value] of Object.entries(options)) {
    if (value !== undefined) given.set(snake(option), value);
  }
  const fromEnv = {};
  const missing = [];
  for (const [name, key] of ENV_KEYS) {
    let value = given.has(key) ? given.get(key) : undefined;
    if (!given.has(key)) {
      const raw = env[name];
      if (typeof raw === 'string' && raw !== '') {
        value = key === 'expected_scopes' ? raw.split(/\s+/).filter(Boolean) : raw;
        fromEnv[key] = value;
      }
    }
    if (REQUIRED_ENV.has(key) && (value === undefined || value === null)) missing.push([name, key]);
  }
  if (missing.length > 0) {
    throw new TokenCheckerError(
      'TC_INVALID_CONFIG',
      `set ${missing.map(([name]) => name).join(', ')} in the environment ` +
        `(or pass ${missing.map(([, key]) => camel(key)).join(', ')})`,
      Status.TC_INVALID_CONFIG,
    );
  }
  return { ...fromEnv, ...options };
}

// ---- the checker ------------------------------------------------------------------------------

const kHandle = Symbol('tokenchecker.handle');
const kScopes = Symbol('tokenchecker.scopes');
const kEager = Symbol('tokenchecker.eager');
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
  #expectedScopes;
  #eager;

  /**
   * Creates a checker. `config` is an options object (camelCase) or a raw JSON string given to
   * the library verbatim. Throws a TokenCheckerError (TC_INVALID_CONFIG,
   * TC_CREDENTIALS_REJECTED, …). With verifyCredentials (the default) this blocks for one
   * introspection: use `await TokenChecker.create(config)` to keep the event loop free.
   */
  constructor(config) {
    if (config !== null && typeof config === 'object' && config[kHandle] !== undefined) {
      this.#handle = config[kHandle];
      this.#expectedScopes = config[kScopes];
      this.#eager = config[kEager];
      return;
    }
    const prepared = prepareConfig(config);
    const answer = native.create(prepared.json);
    if (answer[0] !== 0) throw configError(errorFrom(answer[0], answer[1]), prepared);
    this.#handle = answer[1];
    this.#expectedScopes = Object.freeze(prepared.scopes);
    this.#eager = prepared.eager;
  }

  /** Like the constructor, but runs the library's creation (and credential check) off the event loop. */
  static create(config) {
    return new Promise((resolve, reject) => {
      const prepared = prepareConfig(config);
      const answer = native.createAsync(prepared.json, (status, value) => {
        if (status !== 0) reject(configError(errorFrom(status, value), prepared));
        else resolve(new TokenChecker({
          [kHandle]: value, [kScopes]: Object.freeze(prepared.scopes), [kEager]: prepared.eager,
        }));
      });
      if (answer !== undefined) reject(configError(errorFrom(answer[0], answer[1]), prepared));
    });
  }

  /**
   * A checker configured from the environment, as the CLI is: TC_CLIENT_ID, TC_CLIENT_SECRET,
   * TC_SCOPES (space-separated), TC_AUTH_URL, TC_GROUPS_URL (an empty variable counts as unset).
   * `options` are any constructor options (camelCase or snake_case: `clientId`, `expectedScopes`,
   * `authUrl`, `verifyCredentials`, …) and win over the environment (`undefined` means not
   * given). Throws a TokenCheckerError (TC_INVALID_CONFIG naming the missing variables, or what
   * the constructor throws). Blocks like the constructor.
   */
  static fromEnv(options = {}) {
    return new TokenChecker(envConfig(options));
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

  /**
   * The configuration's expected scopes (a frozen array; a space-separated string is split), as
   * the middleware and writeError name them in `WWW-Authenticate: …, scope="…"`.
   */
  get expectedScopes() {
    return this.#expectedScopes;
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
   * settled; a success is built from the answer memo, see README.md), else asynchronously on
   * the library's runtime.
   */
  check(token) {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#eager) return this.#call(native.check, token);
    let answer;
    try {
      answer = native.checkAnswer(this.#handle, token);
      if (answer === undefined) {
        const id = out[0];
        if (id === 0) return this.#call(native.checkAsync, token);
        const t = memo.map.get(id);
        if (t === undefined) return Promise.resolve(memoMiss(id));
        memo.hits++;
        return Promise.resolve(stateFrom(t, out[1], out[2]));
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => settle(answer[0], answer[1], resolve, reject, toAuthState));
  }

  /** A check through the result document: `fn` is native.check (cache, then async) or checkAsync. */
  #call(fn, token) {
    return new Promise((resolve, reject) => {
      const answer = fn(this.#live(), token, (status, json) =>
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
      const answer = native.purge(this.#live(), token, (status, json) => {
        memoClear();
        settle(status, json, resolve, reject, null, 'purge');
      });
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, null, 'purge');
    });
  }

  /** Removes everything cached for tokens of one identity (id or identity principal). */
  purgeIdentity(identityId) {
    return new Promise((resolve, reject) => {
      const answer = native.purgeIdentity(this.#live(), identityId, (status, json) => {
        memoClear();
        settle(status, json, resolve, reject, null, 'purgeIdentity');
      });
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

// ---- HTTP: bearerToken, writeError, middleware ------------------------------------------------
//
// The HTTP contract of the bindings' middlewares is ../contract/http.json (Go's Middleware
// answers the same): test/contract.test.js runs every case of it against fake-globus.

/**
 * Every error answer, per code: HTTP status, the fixed body message (never the library's
 * detail, which the caller may log through the middleware's onError), and the RFC 6750 `error`
 * of `WWW-Authenticate` (none: no header). TC_CLOSED answers as TC_AUTH_UNAVAILABLE (a service
 * shutting down is unavailable, retry elsewhere or later); another TC_ code (TC_INVALID_CONFIG,
 * TC_WOULD_BLOCK) as TC_PANIC does but with its own code, as Go does; anything that is not a
 * TokenCheckerError as TC_PANIC.
 */
const HTTP_ERRORS = Object.freeze({
  TC_INVALID_ARGUMENT: [401, 'the request has no valid bearer token', 'invalid_request'],
  TC_INACTIVE_TOKEN: [401, 'the token is not active', 'invalid_token'],
  TC_TOKEN_EXPIRED: [401, 'the token has expired or is not yet valid', 'invalid_token'],
  TC_WRONG_AUDIENCE: [401, 'the token is not meant for this service', 'invalid_token'],
  TC_INSUFFICIENT_SCOPE: [403, 'the token lacks the scope this service requires', 'insufficient_scope'],
  TC_NOT_AUTHORIZED: [403, 'the caller is not allowed to use this resource', null],
  TC_AUTH_UNAVAILABLE: [503, 'the authorization service is unavailable; try again later', null],
  TC_CREDENTIALS_REJECTED: [503, 'the authorization service is unavailable; try again later', null],
  TC_PANIC: [500, 'internal error', null],
});

/** Seconds in the Retry-After header of every 503 answer. */
const RETRY_AFTER_S = 5;

/**
 * What writeError answers for `err`: `{status, code, message}` (code and message as in the
 * body), `wwwAuthenticate` and `retryAfter` (null: no such header).
 */
function httpError(err, realm = 'api', scopes = []) {
  let code = err && typeof err.code === 'string' && /^TC_[A-Z_]+$/.test(err.code) ? err.code : 'TC_PANIC';
  if (code === 'TC_CLOSED') code = 'TC_AUTH_UNAVAILABLE';
  const known = Object.prototype.hasOwnProperty.call(HTTP_ERRORS, code);
  const [status, message, bearer] = HTTP_ERRORS[known ? code : 'TC_PANIC'];
  let wwwAuthenticate = null;
  if (bearer) {
    wwwAuthenticate = `Bearer realm=${quote(realm)}, error=${quote(bearer)}`;
    if (bearer === 'insufficient_scope' && scopes.length > 0) {
      wwwAuthenticate += `, scope=${quote(scopes.join(' '))}`;
    }
  }
  return { status, code, message, wwwAuthenticate, retryAfter: status === 503 ? String(RETRY_AFTER_S) : null };
}

/** An auth-param quoted-string: `"` and `\` escaped, control characters become spaces (as Go). */
function quote(s) {
  return `"${String(s).replace(/["\\]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, ' ')}"`;
}

function noBearer() {
  return invalidArgument('the request has no Authorization header; send one: "Authorization: Bearer <access token>"');
}

function badBearer() {
  return invalidArgument('the Authorization header is malformed; send exactly one: "Authorization: Bearer <access token>"');
}

/** Every Authorization header of a request, repeated ones included (node:http keeps only the first in req.headers). */
function authorizationHeaders(req) {
  const distinct = req && req.headersDistinct; // node:http >= 18.3 (a getter of IncomingMessage)
  if (distinct && typeof distinct === 'object') return distinct.authorization || [];
  const raw = req && req.rawHeaders;
  if (Array.isArray(raw)) {
    const values = [];
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (String(raw[i]).toLowerCase() === 'authorization') values.push(String(raw[i + 1]));
    }
    return values;
  }
  const value = req && req.headers ? req.headers.authorization : undefined;
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/**
 * The token of a request's `Authorization: Bearer <token>` header (RFC 6750), as Go's
 * BearerToken: the scheme is case-insensitive and followed by one space; spaces and tabs around
 * the token are ignored. Throws a TokenCheckerError with code TC_INVALID_ARGUMENT when the header
 * is missing, repeated, of another scheme, or its token is empty or holds a character other than
 * visible ASCII (a space inside, say). No network call, no library call: whether the token is
 * valid is for check() to say. Accepts a node:http IncomingMessage (Express's req too) or any
 * object with `headers`.
 */
function bearerToken(req) {
  const values = authorizationHeaders(req);
  if (values.length === 0) throw noBearer();
  if (values.length > 1) throw badBearer();
  const header = values[0];
  const scheme = 'Bearer ';
  if (header.length <= scheme.length || header.slice(0, scheme.length).toLowerCase() !== 'bearer ') {
    throw badBearer();
  }
  const token = header.slice(scheme.length).replace(/^[ \t]+|[ \t]+$/g, '');
  if (token === '' || !/^[\x21-\x7e]+$/.test(token)) throw badBearer();
  return token;
}

const WRITE_ERROR_OPTIONS = new Set(['realm', 'scopes']);

function scopeList(scopes) {
  if (scopes == null) return [];
  if (typeof scopes === 'string') return scopes.split(/\s+/).filter(Boolean);
  if (typeof scopes[Symbol.iterator] === 'function') return Array.from(scopes, String);
  throw invalidArgument('writeError option scopes must be an array of scopes or a space-separated string');
}

/**
 * Answers a failed check as the middleware does (../contract/http.json): `err` is what
 * bearerToken throws or check/authorize/dependentToken reject with (a code the contract does not
 * name answers 500 "internal error" with that code; anything but a TokenCheckerError, 500
 * TC_PANIC). Writes the status, `WWW-Authenticate` (401; 403 for a missing scope, with
 * `scope="<scopes>"`), `Retry-After: 5` (503), `Content-Type: application/json`,
 * `Cache-Control: no-store`, and the body `{"error": {"code", "message"}}` with the contract's
 * fixed message. Options: `realm` (default "api"), `scopes` (the scopes a token needs: a
 * checker's `expectedScopes`). Returns the HTTP status; writes nothing when the response's
 * headers were already sent.
 */
function writeError(res, err, options) {
  const opts = options == null ? {} : options;
  if (!isPlainObject(opts)) throw invalidArgument('the writeError options must be an object');
  for (const key of Object.keys(opts)) {
    if (!WRITE_ERROR_OPTIONS.has(key)) throw invalidArgument(`unknown writeError option '${key}' (realm, scopes)`);
  }
  const realm = opts.realm === undefined ? 'api' : String(opts.realm);
  const answer = httpError(err, realm, scopeList(opts.scopes));
  if (res.headersSent || res.writableEnded) return answer.status;
  const body = JSON.stringify({ error: { code: answer.code, message: answer.message } });
  res.statusCode = answer.status;
  if (answer.wwwAuthenticate !== null) res.setHeader('WWW-Authenticate', answer.wwwAuthenticate);
  else if (typeof res.removeHeader === 'function') res.removeHeader('WWW-Authenticate');
  if (answer.retryAfter !== null) res.setHeader('Retry-After', answer.retryAfter);
  else if (typeof res.removeHeader === 'function') res.removeHeader('Retry-After');
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
  return answer.status;
}

const MIDDLEWARE_OPTIONS = new Set([
  'allowedPrincipals',
  'allowPublic',
  'allowAllAuthenticatedUsers',
  'realm',
  'property',
  'onError',
]);

/** Runs a user callback; a throw from it surfaces like one from any callback, not into our promise. */
function callUser(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    process.nextTick(() => {
      throw e;
    });
  }
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
  if (opts.onError !== undefined && typeof opts.onError !== 'function') {
    throw invalidArgument('middleware option onError must be a function (req, status, err)');
  }
  const realm = opts.realm === undefined ? 'api' : String(opts.realm);
  const property = opts.property === undefined ? 'authState' : String(opts.property);
  const onError = opts.onError;
  const writeOptions = { realm, scopes: checker.expectedScopes };
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

  const fail = (req, res, err) => {
    if (onError) callUser(onError, req, httpError(err).status, err);
    writeError(res, err, writeOptions);
    return false;
  };

  const proceed = (req, next, state) => {
    req[property] = state;
    if (typeof next === 'function') callUser(next);
    return true;
  };

  return function tokencheckerMiddleware(req, res, next) {
    let token;
    try {
      token = bearerToken(req);
    } catch (err) {
      return Promise.resolve(fail(req, res, err));
    }
    const pending = principals
      ? checker.authorize(token, principals, authorizeOptions)
      : checker.check(token);
    return pending.then(
      (state) => proceed(req, next, state),
      (err) => fail(req, res, err),
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

function memoBound(options, key, max) {
  const v = options[key];
  if (v === undefined) return memo[key];
  if (!Number.isInteger(v) || v < 0 || v > max) throw invalidArgument(`${key} must be an integer in [0, ${max}]`);
  return v;
}

/**
 * The answer memo of check()'s cached path in this thread (shared by its checkers): its
 * statistics `{maxEntries, maxBytes, entries, bytes, hits, misses, evictions}`. With options,
 * first sets new bounds and empties it (counters included): `maxEntries` (default 4096; 0
 * turns the memo off) and `maxBytes`, the longest answer text memoised (default 8192).
 */
function resultMemo(options) {
  if (options !== undefined) {
    if (!isPlainObject(options)) throw invalidArgument('the resultMemo options must be an object');
    for (const key of Object.keys(options)) {
      if (!MEMO_OPTIONS.has(key)) throw invalidArgument(`unknown resultMemo option '${key}' (maxEntries, maxBytes)`);
    }
    const maxEntries = memoBound(options, 'maxEntries', 1048576);
    const maxBytes = memoBound(options, 'maxBytes', 67108864);
    memoClear();
    Object.assign(memo, { maxEntries, maxBytes, hits: 0, misses: 0, evictions: 0 });
  }
  const { maxEntries, maxBytes, bytes, hits, misses, evictions } = memo;
  return { maxEntries, maxBytes, entries: memo.map.size, bytes, hits, misses, evictions };
}

module.exports = {
  TokenChecker,
  TokenCheckerError,
  Status,
  stats,
  version,
  inFlight,
  resultMemo,
  bearerToken,
  writeError,
  // internal, for tests
  _native: native,
  _configToJson: configToJson,
  _configKeys: CONFIG_KEYS,
  _envKeys: ENV_KEYS,
  _snake: snake,
  _sources: SOURCES,
  _memo: memo,
  _httpError: httpError,
};
