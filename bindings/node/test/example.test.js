'use strict';
// examples/server.js runs against the fake server and answers as documented.
const { it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const path = require('path');
const readline = require('readline');
const h = require('./helpers');

let fake;
let server;
let base;

before(async () => {
  fake = await h.startFake();
  server = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'server.js')], {
    env: { ...process.env, FAKE_GLOBUS_URL: fake.url, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('example did not start')), 10000);
    server.once('exit', (code) => reject(new Error(`example exited with ${code}`)));
    readline.createInterface({ input: server.stdout }).on('line', (line) => {
      if (line.startsWith('LISTENING=')) {
        clearTimeout(timer);
        resolve(line.slice('LISTENING='.length));
      }
    });
  });
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  if (fake) await fake.stop();
});

async function get(p, token) {
  const res = await fetch(base + p, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json() };
}

it('serves public, authenticated, admin and dependent-token routes', async () => {
  assert.deepEqual((await get('/public')).body, { hello: 'world' });
  const me = await get('/me', 'tok-valid');
  assert.equal(me.status, 200);
  assert.equal(me.body.username, 'alice@example.org');
  assert.equal((await get('/me')).status, 401);
  assert.equal((await get('/me', 'tok-inactive')).status, 401);
  const admin = await get('/admin', 'tok-valid');
  assert.equal(admin.status, 200);
  assert.equal(admin.body.matched, `urn:globus:groups:id:${h.GROUP_ADMIN}`);
  assert.equal((await get('/admin', 'tok-bob')).status, 403);
  const transfer = await get('/transfer', 'tok-valid');
  assert.equal(transfer.status, 200);
  assert.equal(transfer.body.resourceServer, 'transfer.api.globus.org');
  assert.ok(!('accessToken' in transfer.body));
  const stats = await get('/stats');
  assert.ok(stats.body.checks > 0);
});

it('shuts down cleanly on SIGTERM', async () => {
  const exited = new Promise((r) => server.once('exit', (code, signal) => r({ code, signal })));
  server.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
});
