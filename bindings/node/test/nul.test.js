'use strict';
// A string holding a NUL character would reach the C library cut at the NUL ("tok\0junk" as
// "tok"): every method refuses such a token, scope or identity id with TC_INVALID_ARGUMENT (as an
// empty token) before calling the library. Each value's part before the NUL is valid, so a
// truncated call would succeed (when that part is cached) or check that part (which would then
// not come from the network on its next check): both fail here.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');

const { TokenChecker, TokenCheckerError, Status } = require('..');
const h = require('./helpers');

let fake;
let lazy;
let eager;

before(async () => {
  fake = await h.startFake();
  lazy = new TokenChecker(h.config(fake, { maxRetries: 0 }));
  eager = new TokenChecker(h.config(fake, { maxRetries: 0, fetchGroups: 'eager' }));
});

after(async () => {
  if (lazy) lazy.close();
  if (eager) eager.close();
  if (fake) await fake.stop();
});

/** A token spec of its own identity (so that purging another identity never touches it). */
function spec(id) {
  return {
    identity_set: [id],
    groups: [h.GROUP_MEMBER],
    dependent_tokens: [{ scope: h.TRANSFER_SCOPE, resource_server: 'transfer.api.globus.org' }],
  };
}

async function refused(promise, what) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TokenCheckerError, `${what}: expected a TokenCheckerError, got ${err}`);
    assert.equal(err.code, 'TC_INVALID_ARGUMENT', `${what}: ${err.code}: ${err.message}`);
    assert.equal(err.status, Status.TC_INVALID_ARGUMENT);
    assert.match(err.message, /NUL/, what);
    return true;
  });
}

/** Every method with a NUL in each string argument; `tok` is valid, `id` its identity. */
async function refuseAll(tok, id) {
  const bad = `${tok}\u0000junk`;
  const group = [h.GROUP(h.GROUP_MEMBER)];
  await refused(lazy.check(bad), 'check');
  await refused(eager.check(bad), 'check (fetchGroups eager: the document path)');
  await refused(lazy.authorize(bad, group), 'authorize');
  await refused(eager.authorize(bad, ['public'], { allowPublic: true }), 'authorize (public)');
  await refused(lazy.dependentToken(bad, h.TRANSFER_SCOPE), 'dependentToken (token)');
  await refused(lazy.dependentToken(tok, `${h.TRANSFER_SCOPE}\u0000junk`), 'dependentToken (scope)');
  await refused(lazy.dependentToken(tok, 'transfer.api.globus.org\u0000'), 'dependentToken (resource server)');
  await refused(lazy.purge(bad), 'purge');
  await refused(lazy.purgeIdentity(`${id}\u0000junk`), 'purgeIdentity (id)');
  await refused(lazy.purgeIdentity(`${h.IDENTITY(id)}\u0000`), 'purgeIdentity (principal)');
}

describe('strings holding a NUL character', () => {
  it('every method refuses them, before the library: uncached, then cached', async () => {
    const id = crypto.randomUUID();
    const tok = await h.newToken(fake, spec(id), 'nul');
    // Nothing cached: a truncated call would have checked tok.
    await refuseAll(tok, id);
    assert.equal((await eager.check(tok)).cache.source, 'network', 'a refused call checked the token');
    // Cached (check, groups, dependent token): a truncated call would have succeeded, a
    // truncated purge would have dropped the token.
    await lazy.authorize(tok, [h.GROUP(h.GROUP_MEMBER)]);
    await lazy.dependentToken(tok, h.TRANSFER_SCOPE);
    await refuseAll(tok, id);
    assert.equal((await lazy.check(tok)).cache.source, 'memory', 'a refused purge dropped the token');
  });

  it("around the addon's 1 KiB stack buffer, and past it", async () => {
    // get_str copies into a 1024-byte buffer, or reads the string again into a heap one: a NUL
    // is found either way, right after a valid token of any of these lengths.
    const id = crypto.randomUUID();
    const lengths = [1000, 1017, 1018, 1019, 1020, 1023, 1024, 1025, 3000];
    const tokens = {};
    for (const len of lengths) {
      const prefix = `tok-nul-${len}-${crypto.randomBytes(4).toString('hex')}-`;
      tokens[len] = prefix + 'x'.repeat(len - prefix.length);
    }
    await fake.addTokens(Object.fromEntries(Object.values(tokens).map((t) => [t, spec(id)])));
    for (const len of lengths) {
      const tok = tokens[len];
      assert.equal(Buffer.byteLength(tok), len);
      await refused(lazy.check(`${tok}\u0000`), `check, ${len} bytes`);
      await refused(lazy.check(`${tok}\u0000${'y'.repeat(2000)}`), `check, ${len} + 2001 bytes`);
      await refused(lazy.purge(`${tok}\u0000`), `purge, ${len} bytes`);
      assert.equal((await lazy.check(tok)).cache.source, 'network', `${len} bytes: a refused call checked the token`);
      await refused(lazy.check(`${tok}\u0000`), `check, ${len} bytes, cached`);
      await refused(lazy.purge(`${tok}\u0000`), `purge, ${len} bytes, cached`);
      assert.equal((await lazy.check(tok)).cache.source, 'memory', `${len} bytes: a refused purge dropped the token`);
    }
  });

  it('the middleware answers 400 invalid_request, without a library call', async () => {
    const id = crypto.randomUUID();
    const tok = await h.newToken(fake, spec(id), 'nul-mw');
    for (const options of [{}, { allowedPrincipals: [h.GROUP(h.GROUP_MEMBER)] }]) {
      const auth = lazy.middleware(options);
      // (node:http itself refuses a NUL in a header; a framework that lets one through calls
      // the middleware so.)
      const res = recorder();
      let nextCalled = false;
      const ok = await auth({ headers: { authorization: `Bearer ${tok}\u0000junk` } }, res, () => { nextCalled = true; });
      assert.equal(ok, false);
      assert.equal(nextCalled, false);
      assert.equal(res.statusCode, 400);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_request"');
      assert.equal(JSON.parse(res.body).error.code, 'TC_INVALID_ARGUMENT');
    }
    assert.equal((await lazy.check(tok)).cache.source, 'network', 'the middleware checked the token');
  });
});

/** A minimal ServerResponse stand-in. */
function recorder() {
  return {
    headers: {}, statusCode: 200, body: null, headersSent: false, writableEnded: false,
    setHeader(k, v) { this.headers[k.toLowerCase()] = v; },
    removeHeader(k) { delete this.headers[k.toLowerCase()]; },
    end(b) { this.body = b; this.writableEnded = true; this.headersSent = true; },
  };
}
