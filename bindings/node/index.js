'use strict';
// Node.js binding of tokenchecker: a thin layer over the C addon (src/addon.c).
//
// The addon returns `[status, json]` when it knows the answer at once (a cached failure, an
// invalid argument) and otherwise calls back later, exactly once, with `(status, json)` from
// the library's own runtime through one threadsafe function.
//
// check() and authorize() go through the answer path first (`checkAnswer`: tc_try_check_answer;
// `authorizeAnswer`: tc_try_authorize_answer with a compiled policy). A cached success leaves
// its source, age (and matched principal) in `native.answerOut`; the object made from the
// answer's fields (in C, from tc_answer_fields: no JSON) is kept in the addon's answer memo,
// keyed by the answer id and bounded by bytes (TOKENCHECKER_MEMO_BYTES). A hit returns nothing
// at all and the template is read from `slots`; every call gets a fresh AuthState holding the
// template's frozen arrays, with its own `cache`.

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

/**
 * The facts the library states once (tc_library_info): `{version, abi_version, statuses,
 * sources, config_keys, rule_keys}`, read once at require time.
 */
const LIBRARY = deepFreeze(JSON.parse(native.libraryInfo()));

function deepFreeze(v) {
  if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) deepFreeze(v[k]);
    Object.freeze(v);
  }
  return v;
}

/** Status numbers of the C library (from tc_library_info), plus the binding's own TC_CLOSED (-1). */
const Status = Object.freeze(Object.fromEntries([
  ...Object.entries(LIBRARY.statuses).sort((a, b) => a[1] - b[1]),
  ['TC_CLOSED', -1],
]));

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

// ---- principals -------------------------------------------------------------------------------

const IDENTITY_PREFIX = 'urn:globus:auth:identity:';
const GROUP_PREFIX = 'urn:globus:groups:id:';

function principalOf(prefix, id, what) {
  if (typeof id !== 'string' || id === '') throw invalidArgument(`${what} must be a non-empty string`);
  return prefix + id;
}

/** The principal of a Globus Auth identity: `urn:globus:auth:identity:<id>`. */
function identityPrincipal(identityId) {
  return principalOf(IDENTITY_PREFIX, identityId, 'the identity id');
}

/** The principal of a Globus group: `urn:globus:groups:id:<id>`. */
function groupPrincipal(groupId) {
  return principalOf(GROUP_PREFIX, groupId, 'the group id');
}

// ---- result shapes ----------------------------------------------------------------------------

const freezeList = (a) => (Array.isArray(a) ? Object.freeze(a) : a);

/** An AuthState from a result document (the document path: network answers, fetchGroups 'eager'). */
function toAuthState(d) {
  const state = {
    active: d.active,
    sub: d.sub ?? null,
    effectiveIdentity: d.effective_identity ?? null,
    identities: freezeList(d.identities),
    username: d.username ?? null,
    name: d.name ?? null,
    email: d.email ?? null,
    clientId: d.client_id ?? null,
    scopes: freezeList(d.scopes),
    aud: freezeList(d.aud),
    exp: d.exp ?? null,
    nbf: d.nbf ?? null,
    iat: d.iat ?? null,
    groups: freezeList(d.groups ?? null),
    groupsStatus: d.groups_status,
    groupsError: d.groups_error ?? null,
    principals: freezeList(d.principals),
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

// ---- the answer path ----------------------------------------------------------------------------
//
// The memo itself is the addon's (src/addon.c, "the answer memo": keyed by answer id, bounded by
// TOKENCHECKER_MEMO_BYTES for the whole process, its per-entry overhead stated there). Here:
// the array holding its templates (one per thread: each worker loads this module afresh) and the
// function the addon calls to make a template from an answer's fields on a miss. A template is
// frozen, its arrays too (client id, scope and audience lists are shared by every answer holding
// the same ones); it is never handed out itself: every call gets a fresh AuthState.

/** The library's cache sources (tc_library_info); answerOut[OUT_SOURCE] indexes this. */
const SOURCES = LIBRARY.sources;
const SOURCE_NAMES = Object.freeze([...SOURCES, 'unknown']);

/** answerOut's members (src/addon.c OUT_*). */
const OUT_SLOT = 0;
const OUT_SOURCE = 1;
const OUT_AGE = 2;
const OUT_MATCHED = 3;
const OUT_EXP = 5;
const OUT_NBF = 6;
const OUT_IAT = 7;
const out = native.answerOut;

/** The memo's templates: the addon gives the slot of a hit in answerOut[OUT_SLOT]. */
const slots = [];

/** checkMany/authorizeMany's numbers: 4 per token (slot, source, age, matched), ROWS tokens per native call. */
const ROWS = 4096;
const rows = new Float64Array(4 * ROWS);

/**
 * A template from an answer's fields, called by the addon on a memo miss: identities and
 * principals are undefined for the usual identity set, [sub]; exp, nbf and iat are in answerOut
 * (NaN: absent). Scopes, aud and the empty list come frozen (shared by many answers).
 */
function makeTemplate(sub, effectiveIdentity, identities, username, name, email, clientId, scopes, aud, principals) {
  const exp = out[OUT_EXP];
  const nbf = out[OUT_NBF];
  const iat = out[OUT_IAT];
  if (identities === undefined) {
    identities = [sub];
    principals = [effectiveIdentity];
  }
  return Object.freeze({
    sub,
    effectiveIdentity,
    identities: Object.freeze(identities),
    username,
    name,
    email,
    clientId,
    scopes,
    aud,
    exp: Number.isNaN(exp) ? null : exp,
    nbf: Number.isNaN(nbf) ? null : nbf,
    iat: Number.isNaN(iat) ? null : iat,
    principals: Object.freeze(principals),
  });
}

/**
 * The memo's copy of a template it keeps (called by the addon on admission): the same members,
 * made here. V8 pretenures an allocation site whose objects survive young collections; were the
 * memo to keep makeTemplate's own objects, every template (most are used once when there are
 * more users than the memo holds) would then be made in the old generation.
 */
function keepTemplate(t) {
  const own = (a) => (a.length === 0 ? a : Object.freeze(a.slice()));
  const identities = own(t.identities);
  return Object.freeze({
    sub: t.sub,
    effectiveIdentity: t.effectiveIdentity,
    identities,
    username: t.username,
    name: t.name,
    email: t.email,
    clientId: t.clientId,
    scopes: t.scopes,
    aud: t.aud,
    exp: t.exp,
    nbf: t.nbf,
    iat: t.iat,
    principals: t.principals === t.identities ? identities : own(t.principals),
  });
}

native.setup(SOURCES, slots, makeTemplate, keepTemplate);

{
  const m = native.memoStats();
  if (!m.limitValid) {
    throw new TokenCheckerError(
      'TC_INVALID_CONFIG',
      'TOKENCHECKER_MEMO_BYTES must be a number of bytes (a non-negative integer; 0 turns the answer memo off)',
      Status.TC_INVALID_CONFIG,
    );
  }
}

/*
 * AuthStates are made by constructors whose prototype is Object.prototype (plain objects, as
 * object literals would be): V8 pretenures an object literal's allocation site once its objects
 * are found alive in young collections (a batch of results awaited together is), and would then
 * make every later AuthState in the old generation; constructors have no allocation site.
 */
function CacheInfo(source, ageMs) {
  this.source = source;
  this.ageMs = ageMs;
}
CacheInfo.prototype = Object.prototype;

/** An AuthState from a template: a new object, the template's (frozen) arrays, its own `cache`. */
function State(t, source, ageMs) {
  this.active = true;
  this.sub = t.sub;
  this.effectiveIdentity = t.effectiveIdentity;
  this.identities = t.identities;
  this.username = t.username;
  this.name = t.name;
  this.email = t.email;
  this.clientId = t.clientId;
  this.scopes = t.scopes;
  this.aud = t.aud;
  this.exp = t.exp;
  this.nbf = t.nbf;
  this.iat = t.iat;
  this.groups = null;
  this.groupsStatus = 'not_fetched';
  this.groupsError = null;
  this.principals = t.principals;
  this.cache = new CacheInfo(source, ageMs);
}
State.prototype = Object.prototype;

/**
 * The same, with `authorization` (one frozen object per principal of the policy). Written out
 * rather than `State.call(this, …)` then `this.authorization = …`: that was measured 10–18%
 * slower for cached authorizations (1,000 users: 1.65–1.79 against 1.98–2.00 M/s).
 */
function AuthorizedState(t, source, ageMs, authorization) {
  this.active = true;
  this.sub = t.sub;
  this.effectiveIdentity = t.effectiveIdentity;
  this.identities = t.identities;
  this.username = t.username;
  this.name = t.name;
  this.email = t.email;
  this.clientId = t.clientId;
  this.scopes = t.scopes;
  this.aud = t.aud;
  this.exp = t.exp;
  this.nbf = t.nbf;
  this.iat = t.iat;
  this.groups = null;
  this.groupsStatus = 'not_fetched';
  this.groupsError = null;
  this.principals = t.principals;
  this.cache = new CacheInfo(source, ageMs);
  this.authorization = authorization;
}
AuthorizedState.prototype = Object.prototype;

const stateOf = (t, source, ageMs) => new State(t, source, ageMs);
const authorizedOf = (t, source, ageMs, authorization) => new AuthorizedState(t, source, ageMs, authorization);

const isArray = Array.isArray;

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
 * The library's top-level configuration keys (snake_case), from the library (tc_library_info).
 * index.d.ts's TokenCheckerConfig has exactly these (camelCase), and test/lists.test.js checks
 * it and the READMEs against them. A key not listed still reaches the library (a newer library
 * may know it); this list only lets a TC_INVALID_CONFIG error name a misspelling.
 */
const CONFIG_KEYS = LIBRARY.config_keys;
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

/**
 * A configuration for the library: `{json, unknown}`. camelCase options become the
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
    return { json: config, unknown };
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
  return { json: JSON.stringify(out), unknown };
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
const kPolicy = Symbol('tokenchecker.policy'); // a Policy's native handle
const kRequest = Symbol('tokenchecker.request'); // its request document (the async path's)
const kAuthorizations = Symbol('tokenchecker.authorizations'); // per principal: {authorized, matched}
const AUTHORIZE_OPTIONS = new Set(['allowPublic', 'allowAllAuthenticatedUsers']);

/** Validates authorize options: 0 | 1 (allowPublic) | 2 (allowAllAuthenticatedUsers) | 3. */
function authorizeFlags(options) {
  if (options === undefined || options === null) return 0;
  if (!isPlainObject(options)) throw invalidArgument('the authorize options must be an object');
  let flags = 0;
  for (const key in options) {
    if (!Object.prototype.hasOwnProperty.call(options, key)) continue;
    if (!AUTHORIZE_OPTIONS.has(key)) {
      throw invalidArgument(`unknown authorize option '${key}' (allowPublic, allowAllAuthenticatedUsers)`);
    }
    const v = options[key];
    if (v !== undefined && typeof v !== 'boolean') {
      throw invalidArgument(`authorize option '${key}' must be true or false`);
    }
    if (v === true) flags |= key === 'allowPublic' ? 1 : 2;
  }
  return flags;
}

function isPrincipalList(v) {
  return v != null && typeof v !== 'string' && typeof v[Symbol.iterator] === 'function';
}

/** The request document of tc_policy_new / tc_authorize for these principals and options. */
function authorizeRequest(allowedPrincipals, options) {
  if (!isPrincipalList(allowedPrincipals)) {
    throw invalidArgument('allowedPrincipals must be an array of principal strings');
  }
  const flags = authorizeFlags(options);
  return JSON.stringify({
    allowed_principals: Array.from(allowedPrincipals),
    allow_public: (flags & 1) !== 0,
    allow_all_authenticated_users: (flags & 2) !== 0,
  });
}

/**
 * An authorization policy: allowed principals compiled once by the library (tc_policy_new), for
 * `checker.authorize(token, policy)`. Immutable; usable with any checker of this thread. Its
 * native part is released by close() (idempotent; later authorizations with it reject with
 * TC_INVALID_ARGUMENT), or when the policy is garbage-collected.
 */
class Policy {
  #closed = false;

  /**
   * `allowedPrincipals`: 'urn:globus:auth:identity:…', 'urn:globus:groups:id:…', 'public',
   * 'all_authenticated_users' (see identityPrincipal, groupPrincipal); `options`: {allowPublic,
   * allowAllAuthenticatedUsers}. Throws a TokenCheckerError (TC_INVALID_ARGUMENT) for a bad list.
   */
  constructor(allowedPrincipals, options) {
    const request = authorizeRequest(allowedPrincipals, options);
    const flags = authorizeFlags(options);
    const r = native.policyNew(request);
    if (r[0] !== 0) throw errorFrom(r[0], r[1]);
    const principals = r[2]; // frozen, the library's strings: made once per policy
    Object.defineProperty(this, kPolicy, { value: r[1] });
    Object.defineProperty(this, kRequest, { value: request });
    Object.defineProperty(this, kAuthorizations, {
      value: Object.freeze(principals.map((matched) => Object.freeze({ authorized: true, matched }))),
    });
    /** The allowed principals, as the library holds them (frozen). */
    this.principals = principals;
    this.allowPublic = (flags & 1) !== 0;
    this.allowAllAuthenticatedUsers = (flags & 2) !== 0;
    Object.freeze(this);
  }

  /** Whether close() was called. */
  get closed() {
    return this.#closed;
  }

  /** Releases the compiled policy now (otherwise when it is collected). Idempotent. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    native.policyClose(this[kPolicy]);
  }
}

// authorize(token, allowedPrincipals, options) compiles its request once: the policy is found by
// the caller's list object (a middleware passes the same one every time; its items are compared,
// so a list changed in place gets a new policy) or by the request's document, in a small map of
// the most recent POLICY_CACHE requests (services have a handful of rules). A policy that leaves
// the map is closed; one found closed is compiled again.
const POLICY_CACHE = 64;
const policiesByList = new WeakMap(); // list object -> {policy, items, flags}
const policiesByRequest = new Map(); // request JSON -> Policy, least recently added first

function sameItems(items, list) {
  if (!isArray(list)) list = Array.from(list);
  const n = items.length;
  if (list.length !== n) return false;
  for (let i = 0; i < n; i++) if (items[i] !== list[i]) return false;
  return true;
}

function policyOf(allowedPrincipals, options) {
  if (allowedPrincipals instanceof Policy) {
    if (options !== undefined && options !== null) {
      throw invalidArgument('authorize(token, policy) takes no options: they are part of the policy');
    }
    return allowedPrincipals;
  }
  const flags = authorizeFlags(options);
  const keyed = allowedPrincipals !== null && typeof allowedPrincipals === 'object';
  if (keyed) {
    const e = policiesByList.get(allowedPrincipals);
    if (e !== undefined && e.flags === flags && !e.policy.closed && sameItems(e.items, allowedPrincipals)) {
      return e.policy;
    }
  }
  const request = authorizeRequest(allowedPrincipals, options);
  let policy = policiesByRequest.get(request);
  if (policy === undefined || policy.closed) {
    policy = new Policy(allowedPrincipals, options);
    policiesByRequest.delete(request);
    policiesByRequest.set(request, policy);
    if (policiesByRequest.size > POLICY_CACHE) {
      const [oldest, old] = policiesByRequest.entries().next().value;
      policiesByRequest.delete(oldest);
      old.close();
    }
  }
  if (keyed) policiesByList.set(allowedPrincipals, { policy, items: Array.from(allowedPrincipals), flags });
  return policy;
}

function deepFrozenInfo(json) {
  return deepFreeze(JSON.parse(json));
}

class TokenChecker {
  #handle;
  #closed = false;
  #info;
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
    } else {
      const prepared = prepareConfig(config);
      const answer = native.create(prepared.json);
      if (answer[0] !== 0) throw configError(errorFrom(answer[0], answer[1]), prepared);
      this.#handle = answer[1];
    }
    // What the library made of the configuration (tc_checker_info): never parsed here.
    const info = native.checkerInfo(this.#handle);
    if (info[0] !== 0) {
      native.close(this.#handle);
      throw errorFrom(info[0], info[1]);
    }
    this.#info = deepFrozenInfo(info[1]);
    this.#eager = this.#info.fetch_groups === 'eager';
  }

  /** Like the constructor, but runs the library's creation (and credential check) off the event loop. */
  static create(config) {
    return new Promise((resolve, reject) => {
      const prepared = prepareConfig(config);
      const answer = native.createAsync(prepared.json, (status, value) => {
        if (status !== 0) {
          reject(configError(errorFrom(status, value), prepared));
          return;
        }
        try {
          resolve(new TokenChecker({ [kHandle]: value }));
        } catch (e) {
          reject(e);
        }
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
   * The configuration's expected scopes, as the library holds them (tc_checker_info; a frozen
   * array), as the middleware and writeError name them in `WWW-Authenticate: …, scope="…"`.
   */
  get expectedScopes() {
    return this.#info.expected_scopes;
  }

  /**
   * The checker's effective configuration without secrets, as the library gives it
   * (tc_checker_info; snake_case, defaults filled in; frozen).
   */
  get info() {
    return this.#info;
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
   * Checks a token. Resolves to an AuthState (a new object on every call, its arrays frozen);
   * rejects with a TokenCheckerError. Answers from the in-process cache synchronously (the
   * promise is already settled), else asynchronously on the library's runtime.
   */
  check(token) {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#eager) return this.#document(native.check, token);
    let r;
    try {
      r = native.checkAnswer(this.#handle, token);
    } catch (e) {
      return Promise.reject(e);
    }
    if (r === undefined) {
      const slot = out[OUT_SLOT];
      if (slot < 0) return this.#fill(native.checkAsync, token, null);
      return Promise.resolve(stateOf(slots[slot], SOURCE_NAMES[out[OUT_SOURCE]], out[OUT_AGE]));
    }
    if (isArray(r)) return Promise.reject(errorFrom(r[0], r[1]));
    return Promise.resolve(stateOf(r, SOURCE_NAMES[out[OUT_SOURCE]], out[OUT_AGE]));
  }

  /**
   * Checks the token, then whether the caller is one of `allowedPrincipals`
   * ('urn:globus:auth:identity:…', 'urn:globus:groups:id:…', 'public', 'all_authenticated_users'),
   * or with a Policy (`checker.policy(…)`) in their place. Resolves to an AuthState with
   * `authorization: {authorized: true, matched}`; rejects with TC_NOT_AUTHORIZED when nothing
   * matched. The request is compiled once (a Policy, kept for the next calls with the same
   * list); a cached token and groups are answered synchronously.
   */
  authorize(token, allowedPrincipals, options) {
    if (this.#closed) return Promise.reject(closedError());
    let policy;
    let r;
    try {
      policy = policyOf(allowedPrincipals, options);
      if (this.#eager) return this.#document(native.authorize, token, policy[kRequest]);
      r = native.authorizeAnswer(this.#handle, policy[kPolicy], token);
    } catch (e) {
      return Promise.reject(e);
    }
    if (r === undefined) {
      const slot = out[OUT_SLOT];
      if (slot < 0) return this.#fill(native.authorizeAsync, token, policy);
      return Promise.resolve(authorizedOf(slots[slot], SOURCE_NAMES[out[OUT_SOURCE]], out[OUT_AGE],
        policy[kAuthorizations][out[OUT_MATCHED]]));
    }
    if (isArray(r)) return Promise.reject(errorFrom(r[0], r[1]));
    return Promise.resolve(authorizedOf(r, SOURCE_NAMES[out[OUT_SOURCE]], out[OUT_AGE],
      policy[kAuthorizations][out[OUT_MATCHED]]));
  }

  /**
   * Checks many tokens at once: one native call answers every cached one (the answer path, as
   * check()), the others are fetched concurrently. Resolves to an array in the order of
   * `tokens`: for each, its AuthState or the TokenCheckerError check() would reject with. Rejects
   * only when `tokens` is not a list, or the checker is closed.
   */
  checkMany(tokens) {
    return this.#many(tokens, null);
  }

  /**
   * authorize() for many tokens at once, with one policy (a Policy, or allowed principals and
   * options as for authorize()): one native call answers every cached token. Resolves to an
   * array in the order of `tokens`: for each, its AuthState (with `authorization`) or its
   * TokenCheckerError.
   */
  authorizeMany(tokens, allowedPrincipals, options) {
    if (this.#closed) return Promise.reject(closedError());
    let policy;
    try {
      policy = policyOf(allowedPrincipals, options);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#many(tokens, policy);
  }

  #many(tokens, policy) {
    if (this.#closed) return Promise.reject(closedError());
    if (!isArray(tokens)) {
      if (tokens == null || typeof tokens === 'string' || typeof tokens[Symbol.iterator] !== 'function') {
        return Promise.reject(invalidArgument('tokens must be an array of tokens'));
      }
      tokens = Array.from(tokens);
    }
    const n = tokens.length;
    const results = new Array(n);
    if (this.#eager) {
      // the document path, one call per token
      const one = (t) => (policy === null ? this.check(t) : this.authorize(t, policy));
      return Promise.all(tokens.map((t, i) => one(t).then((s) => { results[i] = s; }, (e) => { results[i] = e; })))
        .then(() => results);
    }
    const handle = this.#handle;
    const policyHandle = policy === null ? null : policy[kPolicy];
    const auths = policy === null ? null : policy[kAuthorizations];
    const r = rows;
    let pending = null;
    for (let start = 0; start < n; start += ROWS) {
      const count = Math.min(ROWS, n - start);
      try {
        native.answerMany(handle, policyHandle, tokens, start, count, r, results);
      } catch (e) {
        return Promise.reject(e);
      }
      for (let j = 0, o = 0; j < count; j++, o += 4) {
        const i = start + j;
        const slot = r[o];
        if (slot >= 0 || slot === -2) {
          const t = slot >= 0 ? slots[slot] : results[i];
          results[i] = auths === null
            ? stateOf(t, SOURCE_NAMES[r[o + 1]], r[o + 2])
            : authorizedOf(t, SOURCE_NAMES[r[o + 1]], r[o + 2], auths[r[o + 3]]);
        } else if (slot === -3) {
          results[i] = errorFrom(results[i][0], results[i][1]);
        } else {
          const fill = this.#fill(policy === null ? native.checkAsync : native.authorizeAsync, tokens[i], policy)
            .then((s) => { results[i] = s; }, (e) => { results[i] = e; });
          (pending ??= []).push(fill);
        }
      }
    }
    return pending === null ? Promise.resolve(results) : Promise.all(pending).then(() => results);
  }

  /**
   * A compiled authorization policy for `authorize(token, policy)` (the same as
   * `new Policy(allowedPrincipals, options)`).
   */
  policy(allowedPrincipals, options) {
    return new Policy(allowedPrincipals, options);
  }

  /**
   * A cache miss: the library's async call (tc_check_async / tc_authorize_async with the
   * policy's request) fetches and caches the answer; the result is then made on the answer
   * path like any cached one (the same object, memoised), with the source and age the call
   * reported. Should the cache not hold it (a shared backend without a near cache, say), the
   * call's document is the result.
   */
  #fill(fn, token, policy) {
    return new Promise((resolve, reject) => {
      const done = (status, json) => {
        if (status !== 0) {
          reject(errorFrom(status, json));
          return;
        }
        let doc;
        try {
          doc = JSON.parse(json);
        } catch (e) {
          reject(new TokenCheckerError('TC_PANIC', `cannot read the library's answer: ${e.message}`, Status.TC_PANIC));
          return;
        }
        let r;
        try {
          r = policy === null
            ? native.checkAnswer(this.#handle, token)
            : native.authorizeAnswer(this.#handle, policy[kPolicy], token);
        } catch {
          r = null;
        }
        const t = r === undefined ? (out[OUT_SLOT] >= 0 ? slots[out[OUT_SLOT]] : null) : isArray(r) ? null : r;
        if (t === null || t === undefined) {
          resolve(toAuthState(doc));
        } else if (policy === null) {
          resolve(stateOf(t, doc.cache.source, doc.cache.age_ms));
        } else {
          resolve(authorizedOf(t, doc.cache.source, doc.cache.age_ms, policy[kAuthorizations][out[OUT_MATCHED]]));
        }
      };
      const handle = this.#live();
      const answer = policy === null ? fn(handle, token, done) : fn(handle, token, policy[kRequest], done);
      if (answer !== undefined) reject(errorFrom(answer[0], answer[1]));
    });
  }

  /** The document path (fetchGroups 'eager': answers carry groups): tc_try_check / tc_try_authorize, then async. */
  #document(fn, token, request) {
    return new Promise((resolve, reject) => {
      const cb = (status, json) => settle(status, json, resolve, reject, toAuthState);
      const handle = this.#live();
      const answer = request === undefined ? fn(handle, token, cb) : fn(handle, token, request, cb);
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
   * Empties this thread's answer memo too.
   */
  purge(token) {
    return new Promise((resolve, reject) => {
      const answer = native.purge(this.#live(), token, (status, json) => {
        native.memoClear(false);
        settle(status, json, resolve, reject, null, 'purge');
      });
      if (answer !== undefined) settle(answer[0], answer[1], resolve, reject, null, 'purge');
    });
  }

  /** Removes everything cached for tokens of one identity (id or identity principal). */
  purgeIdentity(identityId) {
    return new Promise((resolve, reject) => {
      const answer = native.purgeIdentity(this.#live(), identityId, (status, json) => {
        native.memoClear(false);
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
// In middleware.js (the bindings' HTTP contract, ../contract/http.json).

const { bearerToken, writeError, makeMiddleware, httpError } = require('./middleware').httpHelpers({
  invalidArgument,
  isPlainObject,
  authorizeRequest,
});

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

/**
 * The answer memo (src/addon.c): `{limitBytes, processBytes, bytes, entries, hits, misses,
 * evictions, refused, entryOverhead}`. `limitBytes` is TOKENCHECKER_MEMO_BYTES (read once per
 * process; default 16 MiB, 0: off), the bound of every thread's memo together; `processBytes`
 * what they hold; the rest is this thread's: `bytes` counted as the lengths of the strings an
 * entry holds on its own plus `entryOverhead` per entry, `refused` the misses not kept.
 */
function resultMemo(...args) {
  if (args.length > 0) {
    throw invalidArgument('resultMemo() takes no options: the memo is bounded by TOKENCHECKER_MEMO_BYTES (bytes, read once per process)');
  }
  return native.memoStats();
}

module.exports = {
  TokenChecker,
  TokenCheckerError,
  Policy,
  Status,
  stats,
  version,
  inFlight,
  resultMemo,
  identityPrincipal,
  groupPrincipal,
  bearerToken,
  writeError,
  // internal, for tests
  _native: native,
  _library: LIBRARY,
  _configToJson: configToJson,
  _configKeys: CONFIG_KEYS,
  _envKeys: ENV_KEYS,
  _snake: snake,
  _sources: SOURCES,
  _slots: slots,
  _memoClear: () => native.memoClear(true),
  _httpError: httpError,
};
