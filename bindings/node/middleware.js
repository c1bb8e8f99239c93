'use strict';
// HTTP: bearerToken, writeError, middleware (index.js re-exports them).
//
// The HTTP contract of the bindings' middlewares is ../contract/http.json (Go's Middleware and
// Python's Flask and FastAPI helpers answer the same), after RFC 6750 §3.1. Its facts (each
// code's status, message and challenge, the answer without bearer credentials, the Retry-After
// seconds) are read from http-contract.json, the package's byte-identical copy of it (the
// package is installed without the repository): test/contract.test.js fails when the copy is
// stale, and runs every case of the contract against fake-globus.

const CONTRACT = require('./http-contract.json');

const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * The answer of a contract entry for `code`: `{status, code, message, wwwAuthenticate,
 * retryAfter}` (null: no such header).
 */
function answerOf(entry, code, realm, scopes) {
  let wwwAuthenticate = null;
  if (entry.challenge) {
    wwwAuthenticate = `Bearer realm=${quote(realm)}`;
    if (entry.error !== null) wwwAuthenticate += `, error=${quote(entry.error)}`;
    if (entry.scope && scopes.length > 0) wwwAuthenticate += `, scope=${quote(scopes.join(' '))}`;
  }
  return {
    status: entry.status,
    code,
    message: entry.message,
    wwwAuthenticate,
    retryAfter: entry.retry_after ? String(CONTRACT.retry_after_s) : null,
  };
}

/** An auth-param quoted-string: `"` and `\` escaped, control characters become spaces (as Go). */
function quote(s) {
  return `"${String(s).replace(/["\\]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, ' ')}"`;
}

/**
 * What writeError answers for `err` (the contract's `no_bearer_token` for an error of bearerToken
 * with `noBearerToken: true`; otherwise its code's entry: TC_CLOSED answers as the contract's
 * `closed` code, a code without an entry with the `otherwise` entry but its own code, anything
 * that is not a TokenCheckerError as the `otherwise` entry): `{status, code, message}` (code and
 * message as in the body), `wwwAuthenticate` and `retryAfter` (null: no such header).
 */
function httpError(err, realm = CONTRACT.realm, scopes = []) {
  if (err && err.noBearerToken === true) {
    return answerOf(CONTRACT.no_bearer_token, CONTRACT.no_bearer_token.code, realm, scopes);
  }
  let code = err && typeof err.code === 'string' && /^TC_[A-Z_]+$/.test(err.code) ? err.code : CONTRACT.otherwise;
  if (code === 'TC_CLOSED') code = CONTRACT.closed;
  const entry = CONTRACT.answers[hasOwn(CONTRACT.answers, code) ? code : CONTRACT.otherwise];
  return answerOf(entry, code, realm, scopes);
}

/**
 * The HTTP helpers, given index.js's `invalidArgument(message)` (a TokenCheckerError
 * TC_INVALID_ARGUMENT), `isPlainObject(v)` and `authorizeRequest(principals, options)` (which
 * validates an authorize request).
 */
function httpHelpers({ invalidArgument, isPlainObject, authorizeRequest }) {
  const HINT = 'send "Authorization: Bearer <access token>"';

  /** A request without bearer credentials: the contract's no_bearer_token answer (401, bare challenge). */
  function noBearer(message) {
    const err = invalidArgument(`${message}; ${HINT}`);
    err.noBearerToken = true;
    return err;
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
   * BearerToken: the scheme is case-insensitive and followed by one space; spaces and tabs
   * around the token are ignored. Throws a TokenCheckerError with code TC_INVALID_ARGUMENT:
   * with `noBearerToken: true` when the request has no bearer credentials (no Authorization
   * header, or one whose scheme, the text before its first space or tab, is not Bearer: Basic,
   * say), answered 401 with a bare challenge; without, when the header is repeated or its Bearer
   * credentials are malformed (no token, a tab after the scheme, two words, a character other
   * than visible ASCII), answered 400 invalid_request. No network call, no library call:
   * whether the token is valid is for check() to say. Accepts a node:http IncomingMessage
   * (Express's req too) or any object with `headers`.
   */
  function bearerToken(req) {
    const values = authorizationHeaders(req);
    if (values.length === 0) throw noBearer('the request has no Authorization header');
    if (values.length > 1) {
      throw invalidArgument('the Authorization header is repeated; send exactly one: "Authorization: Bearer <access token>"');
    }
    const header = values[0];
    const end = header.search(/[ \t]/);
    const scheme = end < 0 ? header : header.slice(0, end);
    if (scheme.toLowerCase() !== 'bearer') throw noBearer("the Authorization header's scheme is not Bearer");
    const token = end < 0 || header[end] !== ' ' ? '' : header.slice(end + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (token === '' || !/^[\x21-\x7e]+$/.test(token)) {
      throw invalidArgument(
        `the Authorization header is malformed; ${HINT}: one space after Bearer, then one token of visible ASCII characters`,
      );
    }
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
   * Answers a failed check as the middleware does (../contract/http.json, see httpError): `err`
   * is what bearerToken throws or check/authorize/dependentToken reject with. Writes the status,
   * `WWW-Authenticate` when the answer has a challenge (with `scope="<scopes>"` for a missing
   * scope), `Retry-After` when it has one (503), `Content-Type: application/json`,
   * `Cache-Control: no-store`, and the body `{"error": {"code", "message"}}` with the contract's
   * fixed message. Options: `realm` (default the contract's, "api"), `scopes` (the scopes a
   * token needs: a checker's `expectedScopes`). Returns the HTTP status; writes nothing when the
   * response's headers were already sent.
   */
  function writeError(res, err, options) {
    const opts = options == null ? {} : options;
    if (!isPlainObject(opts)) throw invalidArgument('the writeError options must be an object');
    for (const key of Object.keys(opts)) {
      if (!WRITE_ERROR_OPTIONS.has(key)) throw invalidArgument(`unknown writeError option '${key}' (realm, scopes)`);
    }
    const realm = opts.realm === undefined ? CONTRACT.realm : String(opts.realm);
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
    const realm = opts.realm === undefined ? CONTRACT.realm : String(opts.realm);
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

  return { bearerToken, writeError, makeMiddleware, httpError };
}

module.exports = { httpHelpers, httpError, CONTRACT };
