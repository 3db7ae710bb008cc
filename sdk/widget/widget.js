/*! Halyard web widget: a chat panel for one Halyard project, embedded with
 *
 *   <script type="module" src="https://HOST/sdk/widget.js"
 *           data-public-key="pk_..." data-project-id="proj_..."></script>
 *
 * Optional attributes: data-user-id (sent to sdk/init as userContext.userId), data-api
 * (the API origin; default: where this file was loaded from), data-open (start open),
 * data-environment (dev, staging or production, the default: the widget talks to that
 * environment's active deployment through its deployment-scoped stream route, or to the
 * project's current agents when the environment has none).
 * No dependencies and no build step. Everything that comes from the server or the user is
 * put into the page as text nodes, never parsed as markup.
 */

const SCRIPT = findScript();
const DATA = (SCRIPT && SCRIPT.dataset) || {};
const API = (DATA.api || new URL(import.meta.url).origin).replace(/\/+$/, '');
const PUBLIC_KEY = (DATA.publicKey || '').trim();
const PROJECT_ID = (DATA.projectId || '').trim();
const USER_ID = (DATA.userId || '').trim() || 'anon-' + randomHex(8);
const ENVIRONMENT = (DATA.environment || '').trim() || 'production';
const LEGACY_STREAM = '/api/v1/chat/agent/stream';
const RESUME_DELAYS_MS = [250, 1000];

const state = {
  token: '',
  expiresAt: 0,
  sessionId: null,
  streamPath: LEGACY_STREAM, // the deployment-scoped route when the environment has one
  busy: false,
  blockedUntil: 0,
  refreshTimer: 0,
  ready: null, // the promise of a usable token
};

function findScript() {
  for (const s of document.querySelectorAll('script[src]')) {
    if (s.src === import.meta.url) return s;
  }
  return document.querySelector('script[src*="/sdk/widget.js"][data-public-key]')
    || document.querySelector('script[src*="/sdk/widget.js"]');
}

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------------------
// DOM: a shadow root, so the page's CSS does not reach in and ours does not leak out.

const CSS = `
:host { all: initial; }
:host {
  --hc-accent: #2f5bea; --hc-accent-text: #fff; --hc-bg: #fff; --hc-text: #1b1f24;
  --hc-soft: #f5f6f8; --hc-line: #dde1e6;
  --hc-font: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
* { box-sizing: border-box; }
.launcher {
  position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  width: 56px; height: 56px; padding: 0; border: 0; border-radius: 50%;
  display: grid; place-items: center; cursor: pointer;
  background: var(--hc-accent); color: var(--hc-accent-text);
  box-shadow: 0 4px 14px rgba(0, 0, 0, .25);
}
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
.launcher.error::after {
  content: "!"; position: absolute; top: -2px; right: -2px; width: 20px; height: 20px;
  border-radius: 50%; background: #c62828; color: #fff; font: 700 13px/20px var(--hc-font);
}
.launcher.left, .panel.left { right: auto; left: 20px; }
button:focus-visible, textarea:focus-visible, .log:focus-visible {
  outline: 3px solid #ffbf47; outline-offset: 2px;
}
.panel {
  position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
  width: min(380px, calc(100vw - 24px)); height: min(560px, calc(100vh - 112px));
  display: flex; flex-direction: column; overflow: hidden;
  background: var(--hc-bg); color: var(--hc-text); font: 15px/1.45 var(--hc-font);
  border-radius: 14px; box-shadow: 0 10px 40px rgba(0, 0, 0, .28);
}
.panel[hidden] { display: none; }
header {
  display: flex; align-items: center; justify-content: space-between; gap: 8px;
  padding: 6px 6px 6px 16px; background: var(--hc-accent); color: var(--hc-accent-text);
}
h2 { margin: 0; font-size: 16px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.close {
  width: 44px; height: 44px; border: 0; border-radius: 8px; cursor: pointer;
  background: transparent; color: inherit; font: 400 26px/1 var(--hc-font);
}
.log {
  flex: 1; overflow-y: auto; padding: 14px; background: var(--hc-soft);
  display: flex; flex-direction: column; gap: 8px;
}
.msg {
  max-width: 85%; padding: 8px 12px; border-radius: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere;
}
.assistant { align-self: flex-start; background: var(--hc-bg); border: 1px solid var(--hc-line); }
.user { align-self: flex-end; background: var(--hc-accent); color: var(--hc-accent-text); }
.msg.failed { border-color: #e0a39d; background: #fdecea; color: #8a1c12; }
.streaming::after { content: "\\258D"; margin-left: 1px; animation: blink 1s steps(1) infinite; }
@keyframes blink { 50% { opacity: 0; } }
.notice {
  margin: 0; padding: 8px 14px; font-size: 14px;
  background: #fff4e5; color: #6b3d00; border-top: 1px solid #f0d5ad;
}
.notice.error { background: #fdecea; color: #8a1c12; border-color: #f2c1bb; }
.notice[hidden] { display: none; }
form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid var(--hc-line); background: var(--hc-bg); }
textarea {
  flex: 1; min-height: 44px; max-height: 120px; padding: 10px; resize: none;
  font: inherit; color: inherit; background: var(--hc-bg);
  border: 1px solid #b9c0c8; border-radius: 10px;
}
.send {
  min-width: 64px; min-height: 44px; padding: 0 16px; border: 0; border-radius: 10px; cursor: pointer;
  background: var(--hc-accent); color: var(--hc-accent-text); font: 600 15px var(--hc-font);
}
.send:disabled, textarea:disabled { opacity: .55; cursor: not-allowed; }
.sr-only {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
@media (max-width: 480px) {
  .panel, .panel.left { inset: 0; width: 100%; height: 100%; border-radius: 0; }
}
@media (prefers-reduced-motion: reduce) { .streaming::after { animation: none; } }
`;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children); // strings become text nodes
  return e;
}

function icon() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z');
  svg.append(path);
  return svg;
}

const host = el('div', { id: 'halyard-chat', 'data-state': 'loading' });
const root = host.attachShadow({ mode: 'open' });
const launcher = el('button', {
  class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'hc-panel',
  'aria-label': 'Chat',
}, icon());
const title = el('h2', { id: 'hc-title' }, 'Chat');
const closeButton = el('button', { class: 'close', type: 'button', 'aria-label': 'Close chat' }, '\u00d7');
const log = el('div', {
  class: 'log', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'hc-title', tabindex: '0',
});
const notice = el('p', { class: 'notice', role: 'alert', hidden: '' });
const label = el('label', { for: 'hc-input', class: 'sr-only' }, 'Message');
const input = el('textarea', {
  id: 'hc-input', rows: '1', maxlength: '8000', placeholder: 'Type a message\u2026', autocomplete: 'off',
  enterkeyhint: 'send',
});
const sendButton = el('button', { class: 'send', type: 'submit' }, 'Send');
const form = el('form', { novalidate: '' }, label, input, sendButton);
const panel = el('section', {
  class: 'panel', id: 'hc-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'hc-title',
  hidden: '',
}, el('header', {}, title, closeButton), log, notice, form);

if ('adoptedStyleSheets' in root && typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype) {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
  root.adoptedStyleSheets = [sheet];
} else {
  root.append(el('style', {}, CSS));
}
root.append(launcher, panel);

launcher.addEventListener('click', () => (panel.hidden ? open() : close()));
closeButton.addEventListener('click', () => close());
panel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    e.preventDefault();
    close();
  }
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});
input.addEventListener('input', grow);
form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (text && !state.busy && !sendButton.disabled) send(text);
});

/** Opens the panel and puts the focus in the message box. */
export function open() {
  panel.hidden = false;
  launcher.setAttribute('aria-expanded', 'true');
  (input.disabled ? closeButton : input).focus();
  scrollDown(true);
}

/** Closes the panel and gives the focus back to the launcher. */
export function close() {
  panel.hidden = true;
  launcher.setAttribute('aria-expanded', 'false');
  launcher.focus();
}

function grow() {
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight + 2, 120)}px`;
}

function scrollDown(force) {
  const near = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  if (force || near) log.scrollTop = log.scrollHeight;
}

/** Adds a message bubble; returns it with the text node that streamed text goes into. */
function addMessage(who, text) {
  const prefix = el('span', { class: 'sr-only' }, who === 'user' ? 'You: ' : `${title.textContent}: `);
  const body = document.createTextNode(text);
  const bubble = el('div', { class: `msg ${who}` }, prefix, el('span', { class: 'text' }, body));
  log.append(bubble);
  scrollDown(who === 'user');
  return { bubble, body };
}

function failMessage(m, text) {
  m.bubble.classList.remove('streaming');
  m.bubble.classList.add('failed');
  m.body.appendData(m.body.data ? `\n${text}` : text);
  scrollDown(false);
}

function showNotice(text, kind) {
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
}

function hideNotice() {
  notice.hidden = true;
  notice.textContent = '';
}

function setState(s) {
  host.dataset.state = s;
  launcher.classList.toggle('error', s === 'error');
}

// ---------------------------------------------------------------------------------------
// The API.

class Failure extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status; // 0: no response (network error, or blocked by CORS)
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

async function call(path, { method = 'GET', headers = {}, body } = {}) {
  const init = { method, headers: { ...headers }, mode: 'cors', credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(API + path, init);
  } catch (e) {
    throw new Failure(0, 'NETWORK', String(e && e.message));
  }
}

/** The error of a non-2xx response, from the `{success:false, error, retryAfterMs}` body. */
async function failure(res) {
  let doc = null;
  try {
    doc = await res.json();
  } catch (_) { /* not JSON */ }
  const err = (doc && doc.error) || {};
  let retry = doc && Number.isFinite(doc.retryAfterMs) ? doc.retryAfterMs : null;
  if (retry === null && res.headers.get('Retry-After')) retry = Number(res.headers.get('Retry-After')) * 1000 || null;
  return new Failure(res.status, String(err.code || `HTTP_${res.status}`), String(err.message || res.statusText), retry);
}

async function json(res) {
  if (!res.ok) throw await failure(res);
  return res.json();
}

function accept(doc) {
  if (!doc || typeof doc.token !== 'string') throw new Failure(500, 'BAD_RESPONSE', 'No token in the answer');
  state.token = doc.token;
  const deployed = doc.widgetConfig && doc.widgetConfig.deployments && doc.widgetConfig.deployments[ENVIRONMENT];
  state.streamPath = typeof deployed === 'string' ? deployed : LEGACY_STREAM;
  const ttl = Number(doc.expiresIn) > 0 ? Number(doc.expiresIn) : 3600;
  state.expiresAt = Date.now() + ttl * 1000;
  clearTimeout(state.refreshTimer);
  // Refresh at 80% of the token's lifetime.
  state.refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.min(ttl * 800, 2 ** 31 - 1));
  return doc;
}

async function init() {
  const doc = await json(await call('/api/v1/sdk/init', {
    method: 'POST',
    headers: { 'X-Public-Key': PUBLIC_KEY },
    body: { projectId: PROJECT_ID, userContext: { userId: USER_ID } },
  }));
  // A new grant cannot see the sessions of the old one.
  state.sessionId = null;
  return accept(doc);
}

async function refresh() {
  try {
    const res = await call('/api/v1/sdk/refresh', {
      method: 'POST', headers: { 'X-SDK-Token': state.token }, body: {},
    });
    if (res.status === 401 || res.status === 403) return init(); // expired or revoked: start over
    return accept(await json(res));
  } catch (e) {
    if (e instanceof Failure && e.status === 0) {
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(() => refresh().catch(() => {}), 30000);
    }
    throw e;
  }
}

async function config() {
  try {
    const doc = await json(await call(`/api/v1/sdk/config/${encodeURIComponent(PROJECT_ID)}`, {
      headers: { 'X-API-Key': PUBLIC_KEY },
    }));
    return doc.config || null;
  } catch (_) {
    return null; // sdk/init carries the same widgetConfig
  }
}

/** A token that is good for at least another minute. */
async function freshToken() {
  await state.ready;
  if (Date.now() > state.expiresAt - 60000) await refresh();
}

// ---------------------------------------------------------------------------------------
// Plain words for what went wrong.

function inWords(ms) {
  const s = Math.max(1, Math.ceil((ms || 1000) / 1000));
  if (s < 60) return s === 1 ? '1 second' : `${s} seconds`;
  const m = Math.ceil(s / 60);
  return m === 1 ? '1 minute' : `${m} minutes`;
}

function initProblem(f) {
  if (!PUBLIC_KEY || !PROJECT_ID) return 'This chat is not set up: the page must give data-public-key and data-project-id.';
  switch (f.status) {
    case 0: return 'The chat can\u2019t start: this website isn\u2019t allowed to use it, or the chat service can\u2019t be reached.';
    case 401: return 'The chat can\u2019t start: its public key is not valid.';
    case 403: return 'The chat can\u2019t start: this website isn\u2019t allowed to use it.';
    case 404: return 'The chat can\u2019t start: its project was not found.';
    case 429: return `The chat is busy \u2014 it will try again in ${inWords(f.retryAfterMs)}.`;
    default: return 'The chat service is unavailable right now. Please try again later.';
  }
}

function turnProblem(code, status) {
  switch (code) {
    case 'NETWORK': return 'Couldn\u2019t reach the assistant. Check your connection and try again.';
    case 'SERVICE_UNAVAILABLE': return 'The assistant is unavailable right now. Please try again later.';
    case 'PAYLOAD_TOO_LARGE': return 'That message is too long.';
    case 'VALIDATION_ERROR': return 'That message couldn\u2019t be sent.';
    case 'FORBIDDEN': return 'This website isn\u2019t allowed to use the chat.';
    case 'UNAUTHORIZED': return 'The chat session has expired. Please reload the page.';
    case 'DROPPED': return 'The connection dropped before the answer was complete.';
    default: return status >= 500 || !status
      ? 'The assistant ran into a problem. Please try again.'
      : 'That message couldn\u2019t be sent. Please try again.';
  }
}

function blockFor(ms, code) {
  const wait = Math.max(1000, ms || 1000);
  state.blockedUntil = Date.now() + wait;
  const what = code === 'QUEUE_FULL' ? 'The assistant is busy' : 'Too many messages';
  showNotice(`${what} \u2014 try again in ${inWords(wait)}.`, 'warn');
  sendButton.disabled = true;
  setTimeout(() => {
    if (Date.now() + 50 >= state.blockedUntil) {
      sendButton.disabled = input.disabled;
      if (notice.classList.contains('warn')) hideNotice();
    }
  }, wait);
}

// ---------------------------------------------------------------------------------------
// Turns: POST the stream route (the environment's deployment, or chat/agent/stream), read
// SSE with fetch (EventSource cannot send headers), resume with Last-Event-ID after a drop.

async function send(text) {
  state.busy = true;
  sendButton.disabled = true;
  hideNotice();
  const user = addMessage('user', text);
  input.value = '';
  grow();
  const reply = addMessage('assistant', '');
  reply.bubble.classList.add('streaming');
  log.setAttribute('aria-busy', 'true');
  try {
    await freshToken();
    await turn(text, user, reply, true);
  } catch (e) {
    const f = e instanceof Failure ? e : new Failure(0, 'NETWORK', String(e));
    failMessage(reply, turnProblem(f.code, f.status));
  } finally {
    reply.bubble.classList.remove('streaming');
    if (!reply.body.data && reply.bubble.isConnected && !reply.bubble.classList.contains('failed')) reply.bubble.remove();
    log.removeAttribute('aria-busy');
    state.busy = false;
    sendButton.disabled = input.disabled || Date.now() < state.blockedUntil;
  }
}

async function turn(text, user, reply, mayRetry) {
  const body = { message: text };
  if (state.streamPath === LEGACY_STREAM) body.projectId = PROJECT_ID;
  if (state.sessionId) body.sessionId = state.sessionId;
  const res = await call(state.streamPath, {
    method: 'POST', headers: { 'X-SDK-Token': state.token, Accept: 'text/event-stream' }, body,
  });
  if (!res.ok) {
    const f = await failure(res);
    if (mayRetry && f.status === 401) {
      await init(); // the token expired or its key was replaced
      return turn(text, user, reply, false);
    }
    const deployed = state.streamPath !== LEGACY_STREAM;
    if (mayRetry && (f.status === 404 || f.status === 410) && (state.sessionId || deployed)) {
      // The conversation is gone, or the environment's deployment changed: ask for the
      // routes again (a new token starts a new conversation) and send it once more.
      if (deployed) await init();
      state.sessionId = null;
      return turn(text, user, reply, false);
    }
    if (f.status === 429) {
      // Not sent: give the text back so it can be sent again later.
      user.bubble.remove();
      reply.bubble.remove();
      if (!input.value) input.value = text;
      blockFor(f.retryAfterMs, f.code);
      return;
    }
    failMessage(reply, turnProblem(f.code, f.status));
    return;
  }
  const stream = { id: res.headers.get('X-Stream-Id'), lastId: 0, done: false };
  await consume(res, stream, reply);
  for (const delay of RESUME_DELAYS_MS) {
    if (stream.done || !stream.id) break;
    await sleep(delay);
    try {
      const again = await call(`/api/v1/chat/stream/${encodeURIComponent(stream.id)}`, {
        headers: { 'X-SDK-Token': state.token, 'Last-Event-ID': String(stream.lastId) },
      });
      if (again.ok) await consume(again, stream, reply);
      else if (again.status !== 429 && again.status < 500) break;
    } catch (_) { /* try again, or give up below */ }
  }
  if (!stream.done) failMessage(reply, turnProblem('DROPPED', 0));
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads an SSE body into `reply` until `done`/`error` or the end of the body. */
async function consume(res, stream, reply) {
  if (!res.body) return;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // Lines end with LF, CRLF or CR; a CR at the end may be the first half of a CRLF.
      buf = (buf + decoder.decode(value, { stream: true })).replace(/\r\n/g, '\n').replace(/\r(?!$)/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (onEvent(parseEvent(block), stream, reply)) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
  } catch (_) {
    // The connection dropped: the caller resumes after stream.lastId.
  }
}

function parseEvent(block) {
  const ev = { id: null, event: 'message', data: [] };
  for (const line of block.split('\n')) {
    if (!line || line[0] === ':') continue; // comments, e.g. ": heartbeat"
    const at = line.indexOf(':');
    const field = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? '' : line.slice(at + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'id') ev.id = value;
    else if (field === 'event') ev.event = value;
    else if (field === 'data') ev.data.push(value);
  }
  return ev;
}

/** Applies one event; true when the turn is over. */
function onEvent(ev, stream, reply) {
  if (!ev.data.length) return false;
  let data = {};
  try {
    data = JSON.parse(ev.data.join('\n'));
  } catch (_) { /* keep {} */ }
  if (ev.event === 'error' && data.code === 'SLOW_CONSUMER') return false; // resume instead
  if (ev.id !== null && /^\d+$/.test(ev.id)) stream.lastId = Number(ev.id);
  switch (ev.event) {
    case 'session':
      if (typeof data.sessionId === 'string') state.sessionId = data.sessionId;
      return false;
    case 'token':
      if (typeof data.delta === 'string') {
        reply.body.appendData(data.delta);
        scrollDown(false);
      }
      return false;
    case 'done':
      if (typeof data.sessionId === 'string') state.sessionId = data.sessionId;
      stream.done = true;
      return true;
    case 'error':
      stream.done = true;
      if (data.code === 'QUEUE_FULL' || data.code === 'RATE_LIMIT_EXCEEDED') blockFor(data.retryAfterMs, data.code);
      failMessage(reply, turnProblem(String(data.code || ''), 500));
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------
// Start.

function applyConfig(cfg) {
  if (!cfg || typeof cfg !== 'object') return;
  const name = cfg.agentName || cfg.projectName;
  if (typeof name === 'string' && name) {
    title.textContent = name;
    label.textContent = `Message ${name}`;
    launcher.setAttribute('aria-label', `Chat with ${name}`);
  }
  const t = cfg.theme && typeof cfg.theme === 'object' ? cfg.theme : {};
  const color = (v) => (typeof v === 'string' && supports('color', v) ? v : null);
  const vars = {
    '--hc-accent': color(t.primaryColor || t.accentColor),
    '--hc-accent-text': color(t.primaryTextColor || t.accentTextColor),
    '--hc-bg': color(t.backgroundColor),
    '--hc-text': color(t.textColor),
    '--hc-font': typeof t.fontFamily === 'string' && supports('font-family', t.fontFamily) ? t.fontFamily : null,
  };
  for (const [k, v] of Object.entries(vars)) if (v) host.style.setProperty(k, v);
  if (t.position === 'left') {
    panel.classList.add('left');
    launcher.classList.add('left');
  }
  if (typeof cfg.greeting === 'string' && cfg.greeting && !log.childElementCount) addMessage('assistant', cfg.greeting);
}

function supports(prop, value) {
  return typeof CSS !== 'undefined' && CSS.supports && CSS.supports(prop, value);
}

async function start() {
  if (!document.body) await new Promise((r) => document.addEventListener('DOMContentLoaded', r, { once: true }));
  document.body.append(host);
  if (DATA.open !== undefined && DATA.open !== 'false') open();
  if (!PUBLIC_KEY || !PROJECT_ID) fail(new Failure(0, 'CONFIG', 'missing attributes'));
  else boot();
}

async function boot() {
  state.ready = init();
  const [token, cfg] = await Promise.allSettled([state.ready, config()]);
  if (token.status === 'rejected') {
    fail(token.reason);
    return;
  }
  applyConfig(cfg.value || token.value.widgetConfig);
  setState('ready');
}

function fail(e) {
  const f = e instanceof Failure ? e : new Failure(0, 'NETWORK', String(e));
  showNotice(initProblem(f), 'error');
  if (f.status === 429) {
    // Busy, not broken: try again once the limit allows.
    setTimeout(() => { hideNotice(); boot(); }, Math.max(1000, f.retryAfterMs || 1000));
    return;
  }
  setState('error');
  input.disabled = true;
  sendButton.disabled = true;
  if (!panel.hidden) closeButton.focus();
}

start();
