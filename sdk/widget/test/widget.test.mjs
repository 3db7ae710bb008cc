// Browser tests of the web widget: Debian's headless Chromium driven by playwright-core,
// against a real `halyard serve --dev` (started by tests/widget.rs, which passes the URLs):
//
//   HALYARD_API_URL     the API, origin B (serves /sdk/widget.js)
//   HALYARD_DEMO_URL    the --dev demo page, origin A (allowed by the demo public key)
//   HALYARD_ROOT_KEY    the operator key (to lower the dev tenant's session message rate)
//   HALYARD_DEV_KEY     the dev tenant's API key (to deploy the demo project's agent)
//   HALYARD_ARTIFACTS   where screenshots go (not committed)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Run: node --test widget.test.mjs (after npm ci in this folder).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (!v) throw new Error(`${name} is not set (run this through tests/widget.rs)`);
  return v;
}

const API = env('HALYARD_API_URL').replace(/\/$/, '');
const DEMO = env('HALYARD_DEMO_URL');
const ROOT_KEY = env('HALYARD_ROOT_KEY');
const DEV_KEY = env('HALYARD_DEV_KEY');
const ARTIFACTS = env('HALYARD_ARTIFACTS', path.resolve('../../../test-artifacts'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const WAIT = { timeout: 15_000 };

let browser;

before(async () => {
  await fs.mkdir(ARTIFACTS, { recursive: true });
  // launch() gives the browser a fresh temporary --user-data-dir of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/**
 * Runs `body` on a page of a new browser context opened on `url`, with the console collected.
 * On failure it saves a screenshot and adds the console and the widget's text to the error.
 */
async function withPage(t, url, { viewport = { width: 1100, height: 760 }, setup } = {}, body) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  try {
    if (setup) await setup(page, context);
    await page.goto(url);
    await body({ page, consoleLines });
  } catch (e) {
    const shot = path.join(ARTIFACTS, `failed-${t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    const widget = await page.evaluate(() => {
      const h = document.querySelector('#halyard-chat');
      return h ? `state=${h.dataset.state}: ${h.shadowRoot.textContent}` : 'no widget';
    }).catch((err) => String(err));
    const more = `\n--- widget: ${widget}\n--- console:\n${consoleLines.join('\n')}\n--- screenshot: ${shot}`;
    e.message += more;
    // The test reporter prints the stack, which was fixed when the error was made.
    if (typeof e.stack === 'string') e.stack += more;
    throw e;
  } finally {
    await context.close();
  }
}

async function widgetState(page, state) {
  await page.waitForFunction(
    (s) => document.querySelector('#halyard-chat')?.dataset.state === s,
    state,
    WAIT,
  );
}

/** The id or class of the focused element inside the widget's shadow root. */
function focused(page) {
  return page.evaluate(() => {
    const a = document.querySelector('#halyard-chat')?.shadowRoot?.activeElement;
    return a ? a.id || a.className : null;
  });
}

/** The texts of the assistant's bubbles (without the screen-reader prefix). */
function assistantTexts(page) {
  return page.evaluate(() => [
    ...document.querySelector('#halyard-chat').shadowRoot.querySelectorAll('.msg.assistant .text'),
  ].map((e) => e.textContent));
}

async function waitForAnswer(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelector('#halyard-chat').shadowRoot.querySelectorAll('.msg.assistant .text')]
      .some((e) => e.textContent === t),
    text,
    WAIT,
  );
}

async function openWidget(page) {
  await widgetState(page, 'ready');
  await page.getByRole('button', { name: /^chat/i }).click();
  await page.getByRole('dialog').waitFor(WAIT);
}

/**
 * Types `text` and presses Enter once the previous turn is over. A turn's last token shows
 * before its `done` event (sent once the reply is durable); until then the log is
 * `aria-busy` and the widget ignores Enter, as its disabled Send button shows.
 */
async function say(page, text) {
  await page.waitForFunction(
    () => !document.querySelector('#halyard-chat').shadowRoot.querySelector('.log').hasAttribute('aria-busy'),
    undefined,
    WAIT,
  );
  const box = page.getByRole('textbox');
  await box.fill(text);
  await box.press('Enter');
}

/** A JSON call to the API with `key` as the bearer credential; fails the test unless 2xx. */
async function callAs(key, method, p, body) {
  const res = await fetch(API + p, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const doc = await res.json();
  assert.ok(res.ok, `${method} ${p}: ${JSON.stringify(doc)}`);
  return doc;
}

test('the demo page on origin A chats with the echo agent through the widget from origin B', { timeout: 30_000 }, (t) => withPage(t, DEMO, {}, async ({ page, consoleLines }) => {
  const src = await page.locator('script[src$="/sdk/widget.js"]').getAttribute('src');
  assert.equal(new URL(src).origin, new URL(API).origin);
  assert.notEqual(new URL(page.url()).origin, new URL(API).origin, 'the page must be another origin');
  await widgetState(page, 'ready');

  // Keyboard: the launcher opens the dialog with Enter and puts the focus in the message box.
  const launcher = page.getByRole('button', { name: 'Chat with assistant' });
  await launcher.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'assistant' });
  await dialog.waitFor(WAIT);
  assert.equal(await focused(page), 'hc-input');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'true');
  assert.equal(await page.getByRole('textbox', { name: 'Message assistant' }).count(), 1);
  assert.equal(await page.getByRole('log').getAttribute('aria-live'), 'polite');
  assert.deepEqual(await assistantTexts(page), ["Hi! I'm assistant. How can I help?"]);

  // Record what the newest assistant bubble shows at every DOM change: tokens must arrive
  // one by one, not as a whole.
  await page.evaluate(() => {
    const root = document.querySelector('#halyard-chat').shadowRoot;
    window.__seen = [];
    new MutationObserver(() => {
      const all = root.querySelectorAll('.msg.assistant .text');
      window.__seen.push(all[all.length - 1]?.textContent ?? '');
    }).observe(root.querySelector('.log'), { subtree: true, childList: true, characterData: true });
  });
  const turns = [];
  page.on('request', (r) => {
    if (r.url() === `${API}/api/v1/chat/agent/stream` && r.method() === 'POST') turns.push(r.postDataJSON());
  });

  await page.keyboard.type('hello from the widget test');
  await page.keyboard.press('Enter');
  await waitForAnswer(page, 'Echo: hello from the widget test');
  const seen = await page.evaluate(() => window.__seen);
  const final = 'Echo: hello from the widget test';
  const partial = new Set(seen.filter((t) => t.startsWith('Echo:') && t !== final && final.startsWith(t)));
  assert.ok(partial.size >= 2, `the answer appeared at once, not token by token: ${JSON.stringify([...partial])}`);
  assert.equal(await focused(page), 'hc-input', 'the focus stays in the message box');

  // A follow-up turn continues the same session.
  await say(page, 'second turn');
  await waitForAnswer(page, 'Echo: second turn');
  assert.equal(turns.length, 2);
  assert.equal(turns[0].sessionId, undefined);
  assert.match(turns[1].sessionId, /^ses_/);

  await page.screenshot({ path: path.join(ARTIFACTS, 'widget-open.png') });

  // Phone width: the panel fills the screen and everything stays reachable.
  await page.setViewportSize({ width: 360, height: 740 });
  const box = await dialog.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 360, JSON.stringify(box));
  const send = await page.getByRole('button', { name: 'Send' }).boundingBox();
  assert.ok(send.x + send.width <= 360 && send.y + send.height <= 740, JSON.stringify(send));
  await page.screenshot({ path: path.join(ARTIFACTS, 'widget-phone.png') });

  // Escape closes and gives the focus back to the launcher.
  await page.getByRole('textbox').focus();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', ...WAIT });
  assert.equal(await focused(page), 'launcher');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false');

  const errors = consoleLines.filter((l) => l.startsWith('error') || l.startsWith('pageerror'));
  assert.deepEqual(errors, []);
}));

test('agent output with markup is shown as text', { timeout: 30_000 }, (t) => withPage(t, DEMO, {}, async ({ page }) => {
  await openWidget(page);
  const attack = '<img src=x onerror="window.__xss=1">';
  await say(page, attack);
  await waitForAnswer(page, `Echo: ${attack}`);
  const shown = await page.evaluate(() => {
    const root = document.querySelector('#halyard-chat').shadowRoot;
    return {
      user: [...root.querySelectorAll('.msg.user .text')].map((e) => e.textContent),
      imgs: root.querySelectorAll('img').length + document.querySelectorAll('img').length,
    };
  });
  assert.deepEqual(shown.user, [attack]);
  assert.equal(shown.imgs, 0);
  await page.waitForTimeout(200);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
}));

test('a page on an origin that is not allowed shows the error state, and the console the CORS rejection', { timeout: 30_000 }, async (t) => {
  // The same page, served from another origin (no public key allows it).
  const html = await (await fetch(DEMO)).text();
  const server = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(html);
    } else {
      res.writeHead(204);
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const other = `http://127.0.0.1:${server.address().port}/`;
  try {
    await withPage(t, other, {}, async ({ page, consoleLines }) => {
      await widgetState(page, 'error');
      await page.getByRole('button', { name: /^chat/i }).click();
      const alert = page.getByRole('alert');
      await alert.waitFor(WAIT);
      assert.match(await alert.textContent(), /isn.t allowed to use it/);
      assert.ok(await page.getByRole('textbox').isDisabled());
      assert.ok(await page.getByRole('button', { name: 'Send' }).isDisabled());
      const cors = consoleLines.filter((l) => /blocked by CORS policy/.test(l) && l.includes('/api/v1/sdk/init'));
      assert.ok(cors.length >= 1, `no CORS rejection in the console:\n${consoleLines.join('\n')}`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'widget-origin-not-allowed.png') });
    });
  } finally {
    server.close();
  }
});

test('the session message rate limit is shown in plain words with retryAfterMs', { timeout: 30_000 }, async (t) => {
  const { tenants } = await admin('GET', '/api/v1/admin/tenants?limit=200');
  const dev = tenants.find((x) => x.name === 'dev');
  assert.ok(dev, 'no dev tenant');
  const before = dev.limits.sessionMessagesPerMinute;
  await admin('PATCH', `/api/v1/admin/tenants/${dev.id}`, { limits: { sessionMessagesPerMinute: 1 } });
  try {
    await withPage(t, DEMO, {}, async ({ page }) => {
      await openWidget(page);
      await say(page, 'one');
      await waitForAnswer(page, 'Echo: one');
      const refused = page.waitForResponse(
        (r) => r.url() === `${API}/api/v1/chat/agent/stream` && r.request().method() === 'POST',
        WAIT,
      );
      await say(page, 'two');
      const res = await refused;
      assert.equal(res.status(), 429);
      const limited = await res.json();
      assert.equal(limited.error.code, 'RATE_LIMIT_EXCEEDED');
      const secs = Math.ceil(limited.retryAfterMs / 1000);
      const mins = Math.ceil(secs / 60);
      const words = secs < 60 ? `${secs} second${secs === 1 ? '' : 's'}` : `${mins} minute${mins === 1 ? '' : 's'}`;
      const alert = page.getByRole('alert');
      await alert.waitFor(WAIT);
      assert.equal(await alert.textContent(), `Too many messages \u2014 try again in ${words}.`);
      // The message was not sent: it is back in the box, and Send waits.
      assert.equal(await page.getByRole('textbox').inputValue(), 'two');
      assert.ok(await page.getByRole('button', { name: 'Send' }).isDisabled());
      await page.screenshot({ path: path.join(ARTIFACTS, 'widget-rate-limited.png') });
    });
  } finally {
    await admin('PATCH', `/api/v1/admin/tenants/${dev.id}`, { limits: { sessionMessagesPerMinute: before } });
  }
});

test('a dropped stream is resumed with Last-Event-ID', { timeout: 30_000 }, (t) => {
  const resumes = [];
  const setup = async (p) => {
    // Let the real turn run to its end, but hand the page only its first two events and
    // then end the body, as a dropped connection would.
    await p.route(`${API}/api/v1/chat/agent/stream`, async (route) => {
      const req = route.request();
      const origin = new URL(p.url()).origin;
      const res = await route.fetch({ headers: { ...req.headers(), origin } });
      const events = (await res.text()).split('\n\n').filter((b) => b.startsWith('id:'));
      const headers = Object.fromEntries(Object.entries(res.headers())
        .filter(([k]) => !['content-length', 'transfer-encoding', 'connection'].includes(k)));
      await route.fulfill({ status: res.status(), headers, body: `${events.slice(0, 2).join('\n\n')}\n\n` });
    });
    p.on('request', (r) => {
      if (r.url().startsWith(`${API}/api/v1/chat/stream/`) && r.method() === 'GET') resumes.push(r.headers()['last-event-id']);
    });
  };
  return withPage(t, DEMO, { setup }, async ({ page }) => {
    await openWidget(page);
    await say(page, 'please resume this answer');
    await waitForAnswer(page, 'Echo: please resume this answer');
    assert.deepEqual(resumes, ['2']);
    // Nothing doubled or lost, and no error shown.
    assert.equal(await page.locator('.msg.failed').count(), 0);
  });
});

test('the SDK token is refreshed at 80% of its lifetime and the new one is used', { timeout: 30_000 }, (t) => withPage(t, DEMO, { setup: (p) => p.clock.install() }, async ({ page }) => {
  await openWidget(page);
  const isRefresh = (r) => r.url() === `${API}/api/v1/sdk/refresh` && r.request().method() === 'POST';
  const refreshed = page.waitForResponse(isRefresh, WAIT);
  // expiresIn is 14400 s: the refresh is due after 11520 s (3 h 12 min).
  await page.clock.fastForward('03:11:00');
  await page.waitForTimeout(100);
  assert.equal(await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.endsWith('/api/v1/sdk/refresh')).length), 0, 'refreshed too early');
  await page.clock.fastForward('00:01:01');
  const res = await refreshed;
  assert.equal(res.status(), 200);
  const { token } = await res.json();
  assert.match(token, /^sdk_/);
  const sent = page.waitForRequest((r) => r.url() === `${API}/api/v1/chat/agent/stream` && r.method() === 'POST', WAIT);
  await say(page, 'after refresh');
  assert.equal((await sent).headers()['x-sdk-token'], token);
  await waitForAnswer(page, 'Echo: after refresh');
}));

const admin = (method, p, body) => callAs(ROOT_KEY, method, p, body);
const tenantCall = (method, p, body) => callAs(DEV_KEY, method, p, body);

// Last: it deploys the demo project's agent, and retires the deployment when done.
test('with a production deployment the widget talks to it through the deployment-scoped route', { timeout: 30_000 }, (t) => {
  let deployedPath = '';
  const setup = async () => {
    const page = await (await fetch(DEMO)).text();
    const pid = page.match(/data-project-id="([^"]+)"/)[1];
    const project = (await tenantCall('GET', `/api/projects/${pid}`)).project;
    const agent = project.entryAgentName;
    const { deployment } = await tenantCall('POST', `/api/projects/${pid}/deployments`, {
      environment: 'production', agentVersionManifest: { [agent]: 'auto' }, entryAgentName: agent,
    });
    t.after(() => tenantCall('POST', `/api/projects/${pid}/deployments/${deployment.id}/retire`, {}));
    deployedPath = `/api/v1/project/${project.slug}/production/agent/${agent}/stream`;
  };
  return withPage(t, DEMO, { setup }, async ({ page }) => {
  const posts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/stream')) posts.push({ url: r.url(), body: r.postDataJSON() });
  });
  await openWidget(page);
  await say(page, 'hello deployment');
  await waitForAnswer(page, 'Echo: hello deployment');
  await say(page, 'and again');
  await waitForAnswer(page, 'Echo: and again');
  assert.deepEqual(posts.map((p) => new URL(p.url).pathname), [deployedPath, deployedPath]);
  assert.equal(posts[0].body.projectId, undefined, 'the path names the project');
  assert.match(posts[1].body.sessionId, /^ses_/);
  assert.equal(await page.locator('.msg.failed').count(), 0);
  });
});
