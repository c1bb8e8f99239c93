// Types of the tokenchecker Node.js binding.
/// <reference types="node" />
import type { IncomingMessage, ServerResponse } from 'http';

/** The process-wide cache's configuration (`cache_config`). */
export interface CacheConfig {
  /** "memory" (default), "redis", "redis_cluster", "redis_sentinel" or "memcached" (or their dogpile.cache.* names). */
  backend?: string;
  /** Upper bound of an entry's lifetime, seconds (default 30). */
  timeout?: number;
  /** Any other backend key (max_entries, url, host, port, prefix, near_cache_ttl, …) passes through; camelCase is converted. */
  [key: string]: unknown;
}

/**
 * Library configuration: one property per top-level key of the library (README.md's table),
 * camelCase, mapped to its snake_case key (acronyms stay whole: `authURL` is `auth_url` too).
 * Keys may also be given in snake_case.
 */
export interface TokenCheckerConfig {
  clientId: string;
  clientSecret: string;
  /** At least one; a space-separated string is accepted. */
  expectedScopes: string[] | string;
  /** Default: clientId. */
  expectedAudience?: string;
  /** Default: https://auth.globus.org */
  authUrl?: string;
  /** Default: https://groups.api.globus.org */
  groupsUrl?: string;
  scopeMatch?: 'any' | 'all';
  /** Clock leeway for exp/nbf, seconds (default 3). */
  leewayS?: number;
  fetchGroups?: 'lazy' | 'eager' | 'never';
  /** Introspect once at creation to verify the client credentials (default true; blocks the constructor). */
  verifyCredentials?: boolean;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxRetries?: number;
  /** Bounds each call end to end, milliseconds (default 15000; 1..600000): introspection, the dependent-token grant, Groups, retries and Retry-After pauses included; then the call rejects with TC_AUTH_UNAVAILABLE. */
  callTimeoutMs?: number;
  maxTokenBytes?: number;
  maxResponseBytes?: number;
  /** Requests to Globus Auth/Groups in flight per checker (default 256); more wait for a slot, then fail with TC_AUTH_UNAVAILABLE. */
  maxConcurrentRequests?: number;
  /** Outage policy: serve a recent positive answer up to this many seconds past its cache lifetime (never past `exp`) when Globus Auth is unavailable (default 0: off). Such answers have cache.source 'stale'. */
  staleIfErrorS?: number;
  /** refresh_ahead_s (default 0: off): a hit on an answer with less than this many seconds left refreshes it in the background (0–3600). */
  refreshAheadS?: number;
  /** Allow plain http:// authUrl/groupsUrl to a host other than loopback (default false). */
  allowInsecureHttp?: boolean;
  /** PEM files of extra CA certificates trusted for authUrl/groupsUrl. */
  caCerts?: string[];
  /** Replaces the process-wide cache (shared by every checker) when given. */
  cacheConfig?: CacheConfig;
}

export type CacheSource = 'network' | 'coalesced' | 'memory' | 'near' | 'redis' | 'memcached' | 'stale';

/**
 * What check() and authorize() resolve to: a new object on every call; its arrays are frozen
 * (every result of one cached answer shares them).
 */
export interface AuthState {
  active: true;
  sub: string | null;
  /** urn:globus:auth:identity:<sub> */
  effectiveIdentity: string | null;
  /** Identity ids of the token's identity set. */
  identities: readonly string[];
  username: string | null;
  name: string | null;
  email: string | null;
  clientId: string | null;
  scopes: readonly string[];
  aud: readonly string[];
  exp: number | null;
  nbf: number | null;
  iat: number | null;
  /** Active group memberships (ids) with fetchGroups 'eager'; null otherwise (authorize() reports the principal that matched, a group's included, in `authorization.matched`). */
  groups: readonly string[] | null;
  groupsStatus: 'not_fetched' | 'available' | 'unavailable';
  /** Why groups are unavailable (only when groupsStatus is 'unavailable'). */
  groupsError: string | null;
  /** Identity principals, then group principals (the latter with fetchGroups 'eager'). */
  principals: readonly string[];
  cache: { source: CacheSource; ageMs: number };
  /** Present on authorize() results. */
  authorization?: Authorization;
}

export interface Authorization {
  readonly authorized: true;
  /** The principal that matched (the policy's own string). */
  readonly matched: string;
}

export interface AuthorizedState extends AuthState {
  authorization: Authorization;
}

export interface DependentToken {
  /** A secret. */
  accessToken: string;
  scope: string;
  resourceServer: string;
  tokenType: string;
  /** Unix seconds. */
  expiresAt: number;
  /** Seconds left. */
  expiresIn: number;
}

export interface AuthorizeOptions {
  allowPublic?: boolean;
  allowAllAuthenticatedUsers?: boolean;
}

export interface MiddlewareOptions extends AuthorizeOptions {
  /** When given, requests are authorized against these principals (403 without a challenge when none matches). */
  allowedPrincipals?: Iterable<string>;
  /** WWW-Authenticate realm (default "api"). */
  realm?: string;
  /** Request property receiving the AuthState (default "authState"). */
  property?: string;
  /**
   * Called before each error answer with the request, the answer's HTTP status and the error
   * (the library's detail, which the answer's body does not carry; never the token): to log
   * them (at least the 5xx ones). A throw from it is rethrown asynchronously, like one from any
   * callback; the answer is written anyway.
   */
  onError?: (req: IncomingMessage, status: number, err: TokenCheckerError | Error) => void;
}

export interface WriteErrorOptions {
  /** WWW-Authenticate realm (default "api"). */
  realm?: string;
  /** The scopes a token needs, named in `WWW-Authenticate: …, scope="…"` for TC_INSUFFICIENT_SCOPE (a checker's expectedScopes). */
  scopes?: Iterable<string> | string;
}

/** tc_checker_info: what the library made of the configuration (snake_case, defaults filled in, no secrets). */
export interface CheckerInfo {
  readonly client_id: string;
  readonly expected_scopes: readonly string[];
  readonly expected_audience: string;
  readonly scope_match: 'any' | 'all';
  readonly leeway_s: number;
  readonly fetch_groups: 'lazy' | 'eager' | 'never';
  readonly auth_url: string;
  readonly groups_url: string;
  readonly call_timeout_ms: number;
  readonly max_token_bytes: number;
  readonly max_concurrent_requests: number;
  readonly stale_if_error_s: number;
  readonly refresh_ahead_s: number;
  readonly [key: string]: unknown;
}

/**
 * Allowed principals compiled once by the library (tc_policy_new), for `checker.authorize(token,
 * policy)`; usable with any checker of this thread. Throws TokenCheckerError
 * (TC_INVALID_ARGUMENT) for a bad list.
 */
export declare class Policy {
  constructor(allowedPrincipals: Iterable<string>, options?: AuthorizeOptions);
  /** The allowed principals, as the library holds them (frozen). */
  readonly principals: readonly string[];
  readonly allowPublic: boolean;
  readonly allowAllAuthenticatedUsers: boolean;
  readonly closed: boolean;
  /** Releases the compiled policy now (otherwise when it is collected); later authorizations with it reject with TC_INVALID_ARGUMENT. Idempotent. */
  close(): void;
}

/** `urn:globus:auth:identity:<id>`. Throws TokenCheckerError (TC_INVALID_ARGUMENT) unless `identityId` is a non-empty string. */
export declare function identityPrincipal(identityId: string): string;
/** `urn:globus:groups:id:<id>`. Throws TokenCheckerError (TC_INVALID_ARGUMENT) unless `groupId` is a non-empty string. */
export declare function groupPrincipal(groupId: string): string;

export type ErrorCode =
  | 'TC_INVALID_ARGUMENT'
  | 'TC_INVALID_CONFIG'
  | 'TC_INACTIVE_TOKEN'
  | 'TC_INSUFFICIENT_SCOPE'
  | 'TC_WRONG_AUDIENCE'
  | 'TC_TOKEN_EXPIRED'
  | 'TC_NOT_AUTHORIZED'
  | 'TC_CREDENTIALS_REJECTED'
  | 'TC_AUTH_UNAVAILABLE'
  | 'TC_PANIC'
  | 'TC_WOULD_BLOCK'
  | 'TC_CLOSED';

export declare class TokenCheckerError extends Error {
  readonly name: 'TokenCheckerError';
  readonly code: ErrorCode;
  /** The C status number (TC_CLOSED: -1). */
  readonly status: number;
}

/** The library's status numbers (tc_library_info), plus the binding's TC_CLOSED. */
export declare const Status: Readonly<{
  TC_OK: 0;
  TC_INVALID_ARGUMENT: 1;
  TC_INVALID_CONFIG: 2;
  TC_INACTIVE_TOKEN: 3;
  TC_INSUFFICIENT_SCOPE: 4;
  TC_WRONG_AUDIENCE: 5;
  TC_TOKEN_EXPIRED: 6;
  TC_NOT_AUTHORIZED: 7;
  TC_CREDENTIALS_REJECTED: 8;
  TC_AUTH_UNAVAILABLE: 9;
  TC_PANIC: 10;
  TC_WOULD_BLOCK: 11;
  TC_CLOSED: -1;
}>;

/** Connect/Express-style request handler; also callable without `next` (resolves true when the request may proceed). */
export type TokenCheckerMiddleware = (
  req: IncomingMessage & { [property: string]: any },
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => Promise<boolean>;

export declare class TokenChecker {
  /** Throws TokenCheckerError. Blocks for one introspection when verifyCredentials is on (the default). */
  constructor(config: TokenCheckerConfig | string);
  /** Creates a checker off the event loop. */
  static create(config: TokenCheckerConfig | string): Promise<TokenChecker>;
  /**
   * Configured from the environment, as the CLI is: TC_CLIENT_ID, TC_CLIENT_SECRET, TC_SCOPES
   * (space-separated), TC_AUTH_URL, TC_GROUPS_URL; an empty variable counts as unset. `options`
   * (any constructor option) win over the environment. Throws TokenCheckerError
   * (TC_INVALID_CONFIG naming the missing variables, or what the constructor throws).
   */
  static fromEnv(options?: Partial<TokenCheckerConfig>): TokenChecker;
  static stats(): Stats;
  static version(): string;

  /** The configuration's expected scopes, as the library holds them (tc_checker_info; frozen). */
  readonly expectedScopes: readonly string[];
  /** The effective configuration without secrets, as the library gives it (tc_checker_info; frozen). */
  readonly info: CheckerInfo;
  readonly closed: boolean;
  /** Operations of this checker in flight. */
  readonly inFlight: number;

  check(token: string): Promise<AuthState>;
  /**
   * Checks the token and authorizes the caller. The request is compiled once into a Policy (kept
   * for later calls with the same list); a cached token and groups are answered synchronously.
   */
  authorize(token: string, allowedPrincipals: Iterable<string>, options?: AuthorizeOptions): Promise<AuthorizedState>;
  /** The same with a compiled policy. */
  authorize(token: string, policy: Policy): Promise<AuthorizedState>;
  /** A compiled policy (as `new Policy(allowedPrincipals, options)`). */
  policy(allowedPrincipals: Iterable<string>, options?: AuthorizeOptions): Policy;
  /**
   * check() for many tokens in one native call (the cached ones; the others are fetched
   * concurrently): per token, in order, its AuthState or the TokenCheckerError check() would
   * reject with. Rejects only for a `tokens` that is not a list, or a closed checker.
   */
  checkMany(tokens: Iterable<string>): Promise<Array<AuthState | TokenCheckerError>>;
  /** authorize() for many tokens with one policy, in one native call: per token, its result or its error. */
  authorizeMany(tokens: Iterable<string>, allowedPrincipals: Iterable<string>, options?: AuthorizeOptions): Promise<Array<AuthorizedState | TokenCheckerError>>;
  authorizeMany(tokens: Iterable<string>, policy: Policy): Promise<Array<AuthorizedState | TokenCheckerError>>;
  dependentToken(token: string, scope: string): Promise<DependentToken>;
  /** Runs on libuv's thread pool (it may touch a shared cache backend). */
  purge(token: string): Promise<void>;
  purgeIdentity(identityId: string): Promise<void>;
  /** Idempotent; in-flight calls settle; later calls reject with code 'TC_CLOSED'. */
  close(): void;
  middleware(options?: MiddlewareOptions): TokenCheckerMiddleware;
}

/**
 * What bearerToken throws for a request without bearer credentials (no Authorization header,
 * or one of another scheme): writeError and the middleware answer it 401 with a bare
 * `WWW-Authenticate: Bearer realm="…"` (RFC 6750 §3.1), unlike a malformed Bearer header.
 */
export interface NoBearerTokenError extends TokenCheckerError {
  readonly code: 'TC_INVALID_ARGUMENT';
  readonly noBearerToken: true;
}

/**
 * The token of a request's `Authorization: Bearer <token>` header (RFC 6750; the scheme is
 * case-insensitive, then one space; spaces and tabs around the token are ignored). Throws a
 * TokenCheckerError with code 'TC_INVALID_ARGUMENT': a NoBearerTokenError (`noBearerToken:
 * true`) when the header is missing or of another scheme (the text before its first space or
 * tab is not Bearer); one without `noBearerToken` when it is repeated or its Bearer credentials
 * are malformed (no token, a tab after the scheme, two words, anything but visible ASCII). Makes
 * no call: whether the token is valid is for check() to say.
 */
export declare function bearerToken(req: IncomingMessage | { headers: Record<string, string | string[] | undefined> }): string;

/**
 * Writes the error answer of ../contract/http.json (RFC 6750 §3.1) for `err` (what bearerToken
 * throws, or what check/authorize/dependentToken reject with): 401 with a bare challenge for a
 * NoBearerTokenError, 400 invalid_request for another TC_INVALID_ARGUMENT, 401 invalid_token,
 * 403 insufficient_scope (naming `scopes`), 403 TC_NOT_AUTHORIZED without a challenge, 503 with
 * Retry-After (TC_CLOSED as TC_AUTH_UNAVAILABLE), another code 500 "internal error" with that
 * code, anything but a TokenCheckerError 500 TC_PANIC: status, WWW-Authenticate, Retry-After,
 * `Content-Type: application/json`, `Cache-Control: no-store` and `{"error": {"code",
 * "message"}}` with the contract's fixed message. Returns the HTTP status; writes nothing when
 * the headers were already sent.
 */
export declare function writeError(res: ServerResponse, err: unknown, options?: WriteErrorOptions): number;

/** The library's process-wide counters, as its JSON document (snake_case keys). */
export interface Stats {
  checks: number;
  hits: number;
  negative_hits: number;
  misses: number;
  coalesced_waits: number;
  waiter_timeouts: number;
  purges: number;
  cache_resets: number;
  requests: { introspect: number; dependent_token: number; groups: number; retries: number };
  errors: { introspect: number; dependent_token: number; groups: number; backend: number };
  backend: Record<string, number>;
  cache: { backend: string; timeout_s?: number; in_flight?: number; [key: string]: unknown };
  [key: string]: unknown;
}

export declare function stats(): Stats;
export declare function version(): string;
/** Asynchronous library calls in flight on this thread (all checkers). */
export declare function inFlight(): number;

/** The answer memo (src/addon.c): answer id -> the object made from the answer's fields. */
export interface ResultMemoStats {
  /** TOKENCHECKER_MEMO_BYTES (read once per process; default 16 MiB; 0 turns the memo off): the bound of every thread's memo together. */
  limitBytes: number;
  /** Whether TOKENCHECKER_MEMO_BYTES was readable (the module does not load otherwise). */
  limitValid: boolean;
  /** Bytes held by every thread's memo. */
  processBytes: number;
  /** This thread's: the lengths of the strings its entries hold on their own, plus entryOverhead per entry. */
  bytes: number;
  /** This thread's entries (keyed by the library's answer id). */
  entries: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Misses not kept (the memo full, and not admitted; or off). */
  refused: number;
  /** The fixed per-entry overhead counted, bytes. */
  entryOverhead: number;
}

/** The answer memo's statistics (this thread's, and the process's bytes). */
export declare function resultMemo(): ResultMemoStats;
