// Drives Debian's headless Chromium against ternd's sample page and prints
// one JSON line for tests/browser.rs to check.
//
//   node tests/browser/run.mjs <http-url> gather [api-key]
//   node tests/browser/run.mjs <http-url> call
//   node tests/browser/run.mjs <http-url> servers <api-key> <dead-port>
//   node tests/browser/run.mjs <http-url> stats
//   node tests/browser/run.mjs <http-url> cluster-call <other-node-http-url>
//
// SCREENSHOTS=<dir> saves pictures of the pages as <dir>/<scenario>-<what>.png.
import { mkdirSync } from 'node:fs';
import { runScenario, WAIT } from './harness.mjs';

const [base, scenario, key, deadPort] = process.argv.slice(2);
let browser;
let pageErrors;

async function open(context, path, at = base) {
  const page = await context.newPage();
  const name = `page${context.pages().length}`;
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    process.stderr.write(`[${name} ${m.type()}] ${m.text()}\n`);
    // The page's Content-Security-Policy must never have to block anything.
    if (/Content Security Policy/i.test(m.text())) pageErrors.push(`${name}: ${m.text()}`);
  });
  await page.goto(at + path, { timeout: WAIT });
  await page.waitForFunction(() => window.ternd, null, { timeout: WAIT });
  return page;
}

async function screenshot(page, what) {
  const dir = process.env.SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: `${dir}/${scenario}-${what}.png`, fullPage: true });
}

async function gather(context) {
  const page = await open(context, key ? `/?key=${encodeURIComponent(key)}` : '/');
  const all = await page.evaluate(() => window.ternd.gather({ timeoutMs: 15000 }));
  const relayOnly = await page.evaluate(() => window.ternd.gather({ relay: true, timeoutMs: 15000 }));
  await page.evaluate(() => window.ternd.gather({ timeoutMs: 15000 })); // leave the full table on screen
  await screenshot(page, 'page');
  let withoutKey = null;
  if (key) {
    const bare = await open(context, '/');
    withoutKey = await bare.evaluate(() => window.ternd.gather().then(() => 'no error', (e) => e.message));
  }
  return { ok: true, all, relayOnly, withoutKey };
}

// Connected with the chat open; after an ICE restart (`oldUfrag` given) also
// with new ICE credentials and negotiation finished. A function, not a
// string: the page's Content-Security-Policy forbids eval.
const connected = (page, oldUfrag = null) => page.waitForFunction((u) => {
  const s = window.ternd.state();
  return s.connection === 'connected' && s.channel === 'open' && (u === null || (s.ufrag !== u && s.signaling === 'stable'));
}, oldUfrag, { timeout: WAIT, polling: 100 });

async function chat(from, to, text) {
  if (!await from.evaluate((t) => window.ternd.sendChat(t), text)) throw new Error(`chat not open for "${text}"`);
  await to.waitForFunction((t) => window.ternd.lastChat === t, text, { timeout: WAIT, polling: 100 });
}

// Two pages in `room`, relay-only with generated media, a joined before b; connected.
async function twoPages(room) {
  const path = `/?room=${room}&relay=1&autostart=1&media=generated`;
  const a = await open(await browser.newContext(), path);
  await a.waitForFunction(() => window.ternd.state().id, null, { timeout: WAIT });
  const b = await open(await browser.newContext(), path);
  await connected(a);
  await connected(b);
  return [a, b];
}

async function call() {
  const [a, b] = await twoPages('r1');
  await chat(a, b, 'hello from a');
  await chat(b, a, 'hello from b');
  const pairs = { a: await a.evaluate(() => window.ternd.selectedPair()), b: await b.evaluate(() => window.ternd.selectedPair()) };
  const before = { a: await a.evaluate(() => window.ternd.state()), b: await b.evaluate(() => window.ternd.state()) };
  await screenshot(a, 'a');

  // The signaling socket drops: a resumes its id; then an ICE restart.
  await a.evaluate(() => window.ternd.dropSocket());
  await a.waitForFunction(() => window.ternd.state().socket.startsWith('open'), null, { timeout: WAIT, polling: 100 });
  await a.evaluate(() => window.ternd.restartIce());
  await connected(a, before.a.ufrag);
  await connected(b, before.b.ufrag);
  await chat(a, b, 'after the restart');
  const after = { a: await a.evaluate(() => window.ternd.state()), b: await b.evaluate(() => window.ternd.state()) };
  const pairsAfter = { a: await a.evaluate(() => window.ternd.selectedPair()), b: await b.evaluate(() => window.ternd.selectedPair()) };
  return { ok: true, pairs, pairsAfter, before, after, chatB: await b.evaluate(() => window.ternd.chat) };
}

// ---- the ICE server tester, through its DOM ---------------------------------

// Clicks "Gather candidates" and waits until no URL row is pending.
async function gatherOnPage(page) {
  await page.click('#gather');
  await page.waitForFunction(() => !document.querySelector('#gather').disabled
    && document.querySelector('#url-rows tr') && !document.querySelector('#url-rows tr.pending'), null, { timeout: WAIT, polling: 100 });
  return page.$$eval('#url-rows tr', (rows) => rows.map((tr) => ({
    url: tr.dataset.url, cls: tr.className, result: tr.cells[1].textContent, time: tr.cells[2].textContent,
    candidates: tr.cells[3].textContent, explanation: tr.cells[4].textContent,
  })));
}

// The editor's rows, credentials left out.
const editorRows = (page) => page.$$eval('#server-rows tr', (rows) => rows.map((tr) => ({
  url: tr.querySelector('.url').value, username: tr.querySelector('.username').value,
  hasCredential: tr.querySelector('.credential').value !== '',
})));

async function servers(context) {
  const page = await open(context, `/?key=${encodeURIComponent(key)}`);
  await page.waitForFunction(() => document.querySelectorAll('#server-rows tr').length > 0, null, { timeout: WAIT, polling: 100 });
  const prefilled = await editorRows(page);
  await page.fill('#gather-timeout', '15000');
  const first = await gatherOnPage(page);
  await screenshot(page, 'prefilled');

  // Paste a configuration: the pre-filled TURN/UDP URL and a port nobody listens on.
  const config = await page.evaluate((dead) => {
    const udp = [...document.querySelectorAll('#server-rows tr')].find((tr) => /^turn:.*transport=udp/.test(tr.querySelector('.url').value));
    const value = (cls) => udp.querySelector(cls).value;
    return {
      iceServers: [
        { urls: [value('.url')], username: value('.username'), credential: value('.credential') },
        { urls: `turn:127.0.0.1:${dead}?transport=udp`, username: 'nobody', credential: 'nothing' },
      ],
      iceCandidatePoolSize: 2,
    };
  }, deadPort);
  await page.click('#paste summary');
  await page.fill('#config-json', JSON.stringify(config));
  await page.click('#apply-config');
  const pasted = { rows: await editorRows(page), poolSize: await page.inputValue('#pool-size') };
  // A wrong credential typed into the editor, and a short timeout for the dead port.
  await page.fill('#server-rows tr:nth-child(1) .credential', 'wrong-credential');
  await page.fill('#gather-timeout', '4000');
  const second = await gatherOnPage(page);
  const json = await page.textContent('#results-json');
  // "Copy results as JSON" puts the same document on the clipboard.
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await page.click('#copy-results');
  await page.waitForFunction(() => /copied/.test(document.getElementById('gather-status').textContent), null, { timeout: WAIT, polling: 100 });
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  await page.click('#results summary');
  await screenshot(page, 'errors');

  // A phone-width screen: nothing wider than the viewport.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await screenshot(page, 'phone');
  return { ok: true, prefilled, first, pasted, second, json, copied, overflow };
}

// ---- live call statistics, through the DOM -----------------------------------

// What the stats part of the page shows now.
const shown = (page) => page.evaluate(() => {
  const $ = (id) => document.getElementById(id);
  const points = (id) => $(id).getAttribute('points').trim().split(/\s+/).filter(Boolean)
    .map((p) => p.split(',').map(Number));
  return {
    rtt: $('st-rtt').textContent, rttMs: $('st-rtt').dataset.ms, bytes: $('st-bytes').textContent,
    sent: Number($('st-bytes').dataset.sent), received: Number($('st-bytes').dataset.received),
    bitrate: $('st-bitrate').textContent, graphSend: points('graph-send'), graphRecv: points('graph-recv'),
    others: [...$('other-pairs').rows].map((tr) => [...tr.cells].map((c) => c.textContent)),
    ice: $('st-ice').textContent, pc: $('st-pc').textContent, restartEnabled: !$('ice-restart').disabled,
  };
});

async function statsScenario() {
  const [a, b] = await twoPages('s1');
  // A few one-second readings with an RTT.
  await a.waitForFunction(() => document.getElementById('st-rtt').dataset.ms
    && document.getElementById('graph-send').getAttribute('points').trim().split(/\s+/).length >= 3,
  null, { timeout: WAIT, polling: 200 });
  const early = await shown(a);
  await a.waitForTimeout(2500);
  const later = await shown(a);
  await screenshot(a, 'call');

  const ufrag = (p) => p.evaluate(() => window.ternd.state().ufrag);
  const [ua, ub] = [await ufrag(a), await ufrag(b)];
  await a.click('#ice-restart');
  await connected(a, ua);
  await connected(b, ub);
  await a.waitForTimeout(1500); // one more reading after the restart
  const restarted = await shown(a);
  await screenshot(a, 'restarted');
  return { ok: true, early, later, restarted };
}

// The caller's page on one node, the callee's on another (a cluster): they
// meet in one room through the two nodes' signaling sockets and call
// relay-only through whichever nodes their iceServers name.
async function clusterCall(otherBase) {
  const path = '/?room=spanning&relay=1&autostart=1&media=generated';
  const a = await open(await browser.newContext(), path);
  await a.waitForFunction(() => window.ternd.state().id, null, { timeout: WAIT });
  const b = await open(await browser.newContext(), path, otherBase);
  await connected(a);
  await connected(b);
  await chat(a, b, 'hello from node a');
  await chat(b, a, 'hello from node b');
  await screenshot(a, 'call');
  return {
    ok: true,
    pairs: { a: await a.evaluate(() => window.ternd.selectedPair()), b: await b.evaluate(() => window.ternd.selectedPair()) },
    state: { a: await a.evaluate(() => window.ternd.state()), b: await b.evaluate(() => window.ternd.state()) },
    chatA: await a.evaluate(() => window.ternd.chat),
    chatB: await b.evaluate(() => window.ternd.chat),
  };
}

await runScenario('run.mjs', 50000, async (b, errors) => {
  [browser, pageErrors] = [b, errors];
  return scenario === 'gather' ? gather(await browser.newContext())
    : scenario === 'call' ? call()
      : scenario === 'servers' ? servers(await browser.newContext())
        : scenario === 'stats' ? statsScenario()
          : scenario === 'cluster-call' ? clusterCall(key)
            : { ok: false, error: `unknown scenario ${scenario}` };
});
