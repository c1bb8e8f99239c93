'use strict';
// A small HTTP API protected by tokenchecker's middleware (plain node:http, no framework).
//
//   # against a fake Globus started for you (needs target/release/fake-globus):
//   node examples/server.js
//   # against a given authorization server:
//   TOKENCHECKER_AUTH_URL=https://auth.globus.org CLIENT_ID=... CLIENT_SECRET=... \
//     EXPECTED_SCOPE=urn:globus:auth:scope:... node examples/server.js
//
// Then:
//   curl -i localhost:8080/public
//   curl -i localhost:8080/me -H 'Authorization: Bearer tok-valid'
//   curl -i localhost:8080/admin -H 'Authorization: Bearer tok-valid'   # group admin -> 200
//   curl -i localhost:8080/admin -H 'Authorization: Bearer tok-bob'     # -> 403
//   curl -i localhost:8080/me -H 'Authorization: Bearer tok-inactive'   # -> 401
//   curl -i localhost:8080/transfer -H 'Authorization: Bearer tok-valid'
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');
const readline = require('readline');
const { TokenChecker, bearerToken, writeError, stats } = require('..');

const ADMIN_GROUP = process.env.ADMIN_GROUP || '22222222-2222-4222-8222-222222222222';
const TRANSFER_SCOPE = 'urn:globus:auth:scope:transfer.api.globus.org:all';

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function startFakeGlobus() {
  const bin = process.env.TOKENCHECKER_FAKE_GLOBUS ||
    path.resolve(__dirname, '..', '..', '..', 'target', 'release', 'fake-globus');
  const proc = spawn(bin, ['--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`fake-globus exited (${code})`)));
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.startsWith('FAKE_GLOBUS_URL=')) resolve(line.slice('FAKE_GLOBUS_URL='.length));
    });
  });
  proc.removeAllListeners('exit');
  return { url, stop: () => proc.kill('SIGTERM') };
}

async function main() {
  let fake = null;
  let authUrl = process.env.TOKENCHECKER_AUTH_URL || process.env.FAKE_GLOBUS_URL;
  if (!authUrl) {
    fake = await startFakeGlobus();
    authUrl = fake.url;
    console.log(`started fake Globus at ${authUrl}`);
  }

  // Created off the event loop (it verifies the client credentials with one introspection).
  const checker = await TokenChecker.create({
    clientId: process.env.CLIENT_ID || 'test-client',
    clientSecret: process.env.CLIENT_SECRET || 'test-secret',
    expectedScopes: [process.env.EXPECTED_SCOPE || 'urn:globus:auth:scope:test:all'],
    authUrl,
    groupsUrl: process.env.TOKENCHECKER_GROUPS_URL || authUrl,
  });

  // onError: the library's detail (never the token) goes to the log; the client gets the
  // contract's fixed message (../contract/http.json). Here only the server-side failures.
  const onError = (req, status, err) => {
    if (status >= 500) console.error(`${req.method} ${req.url} -> ${status} ${err.code}: ${err.message}`);
  };
  const authenticated = checker.middleware({ realm: 'example', onError });
  const admins = checker.middleware({
    realm: 'example',
    onError,
    allowedPrincipals: [`urn:globus:groups:id:${ADMIN_GROUP}`],
  });

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      switch (url.pathname) {
        case '/public':
          return json(res, 200, { hello: 'world' });
        case '/me':
          if (!(await authenticated(req, res))) return; // 401/503 already sent
          return json(res, 200, {
            username: req.authState.username,
            identity: req.authState.effectiveIdentity,
            identities: req.authState.identities,
            cache: req.authState.cache,
          });
        case '/admin':
          // Express style works too: admins(req, res, next)
          return admins(req, res, () => json(res, 200, {
            admin: req.authState.username,
            matched: req.authState.authorization.matched,
          }));
        case '/transfer': {
          if (!(await authenticated(req, res))) return;
          const token = bearerToken(req); // the middleware accepted it
          const dep = await checker.dependentToken(token, TRANSFER_SCOPE);
          // never send the dependent token itself back
          return json(res, 200, { resourceServer: dep.resourceServer, expiresIn: dep.expiresIn });
        }
        case '/stats':
          return json(res, 200, stats());
        default:
          return json(res, 404, { error: { code: 'NOT_FOUND', message: 'no such route' } });
      }
    } catch (err) {
      // a failed dependentToken(), say: the same answers as the middleware's (403, 503, …)
      onError(req, writeError(res, err, { realm: 'example', scopes: checker.expectedScopes }), err);
    }
  });

  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, '127.0.0.1', () => {
    console.log(`LISTENING=http://127.0.0.1:${server.address().port}`);
  });

  const shutdown = () => {
    server.close(() => {
      checker.close();
      if (fake) fake.stop();
    });
    server.closeIdleConnections?.();
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
