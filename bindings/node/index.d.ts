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
  /** Bounds each call end to end, milliseconds (default 15000; 1..600000): introspection, the dependent-token grant, Groups, retries and Retry-After pauses included; then the call rejects with TC_AUTH_UNAVAILABLE. */
  callTimeoutMs?: number;
  maxRetries?: number;
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

/** What check() and authorize() resolve to: a new object (own arrays) on every call. */
export interface AuthState {
  active: true;
  sub: string | null;
  /** urn:globus:auth:identity:<sub> */
  effectiveIdentity: string | null;
  /** Identity ids of the token's identity set. */
  identities: string[];
  username: string | null;
  name: string | null;
  email: string | null;
  clientId: string | null;
  scopes: string[];
  aud: string[];
  exp: number | null;
  nbf: number | null;
  iat: number | null;
  /** Active group memberships (ids), null unless fetched. */
  groups: string[] | null;
  groupsStatus: 'not_fetched' | 'available' | 'unavailable';
  /** Why groups are unavailable (only when groupsStatus is 'unavailable'). */
  groupsError: string | null;
  /** Identity principals, then group principals. */
  principals: string[];
  cache: { source: CacheSource; ageMs: number };
  /** Present on authorize() results. */
  authorization?: Authorization;
}

export interface Authorization {
  authorized: true;
  /** The principal that matched. */
  matched: string;
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
  /** When given, requests are authorized against these principals (403 when none matches). */
  allowedPrincipals?: Iterable<string>;
  /** WWW-Authenticate realm (default "api"). */
  realm?: string;
  /** Request property receiving the AuthState (default "authState"). */
  property?: string;
  /**
   * Called before each error answer with the HTTP status and the error (the library's detail,
   * which the answer's body does not carry; never the token): to log them. A throw from it is
   * rethrown asynchronously, like one from any callback; the answer is written anyway.
   */
  onError?: (req: IncomingMessage, status: number, err: TokenCheckerError | Error) => void;
}

export interface WriteErrorOptions {
  /** WWW-Authenticate realm (default "api"). */
  realm?: string;
  /** The scopes a token needs, named in `WWW-Authenticate: …, scope="…"` for TC_INSUFFICIENT_SCOPE (a checker's expectedScopes). */
  scopes?: Iterable<string> | string;
}

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

  /** The configuration's expected scopes (frozen; a space-separated string is split). */
  readonly expectedScopes: readonly string[];
  readonly closed: boolean;
  /** Operations of this checker in flight. */
  readonly inFlight: number;

  check(token: string): Promise<AuthState>;
  authorize(token: string, allowedPrincipals: Iterable<string>, options?: AuthorizeOptions): Promise<AuthorizedState>;
  dependentToken(token: string, scope: string): Promise<DependentToken>;
  /** Runs on libuv's thread pool (it may touch a shared cache backend). */
  purge(token: string): Promise<void>;
  purgeIdentity(identityId: string): Promise<void>;
  /** Idempotent; in-flight calls settle; later calls reject with code 'TC_CLOSED'. */
  close(): void;
  middleware(options?: MiddlewareOptions): TokenCheckerMiddleware;
}

/**
 * The token of a request's `Authorization: Bearer <token>` header (RFC 6750; the scheme is
 * case-insensitive). Throws a TokenCheckerError with code 'TC_INVALID_ARGUMENT' when the header
 * is missing, repeated, of another scheme, or its token is empty or holds anything but visible
 * ASCII. Makes no call: whether the token is valid is for check() to say.
 */
export declare function bearerToken(req: IncomingMessage | { headers: Record<string, string | string[] | undefined> }): string;

/**
 * Writes the error answer of ../contract/http.json for `err` (what bearerToken throws, or what
 * check/authorize/dependentToken reject with; another code answers 500 "internal error" with that
 * code, anything but a TokenCheckerError 500 TC_PANIC): status,
 * WWW-Authenticate, Retry-After, `Content-Type: application/json`, `Cache-Control: no-store` and
 * `{"error": {"code", "message"}}` with the contract's fixed message. Returns the HTTP status;
 * writes nothing when the headers were already sent.
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

export interface ResultMemoOptions {
  /** Most answers held (default 4096); 0 turns the memo off. Integer in [0, 1048576]. */
  maxEntries?: number;
  /** Longest answer text memoised, bytes (default 8192; longer ones are decoded on every check). */
  maxBytes?: number;
}

export interface ResultMemoStats {
  maxEntries: number;
  maxBytes: number;
  /** Answers held now (keyed by the library's answer id). */
  entries: number;
  /** Total size of the held answers' texts, bytes (a size measure: only their decoded objects are kept). */
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

/**
 * check()'s answer memo for this thread (shared by its checkers; answer id -> decoded answer): its
 * statistics; with options, first sets new bounds and empties it (counters included). Throws
 * TokenCheckerError (TC_INVALID_ARGUMENT) on a bad option.
 */
export declare function resultMemo(options?: ResultMemoOptions): ResultMemoStats;
