// Drives Debian's headless Chromium against ternd's sample page and prints
// one JSON line for tests/browser.rs to check.
//
//   node tests/browser/run.mjs <http-url> gather [api-key]
//   node tests/browser/run.mjs <http-url> call
//   node tests/browser/run.mjs <http-url> cluster-call <other-node-http-url>
//
// SCREENSHOT=/tmp/x.png saves a picture of the (first) page at the end.
import { runScenario, WAIT } from './harness.mjs';

const [base, scenario, key] = process.argv.slice(2);
let browser;
let pageErrors;

async function open(context, path, at = base) {
  const page = await context.newPage();
  const name = `page${context.pages().length}`;
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => process.stderr.write(`[${name} ${m.type()}] ${m.text()}\n`));
  await page.goto(at + path, { timeout: WAIT });
  await page.waitForFunction(() => window.ternd, null, { timeout: WAIT });
  return page;
}

async function screenshot(page) {
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
}

async function gather(context) {
  const page = await open(context, key ? `/?key=${encodeURIComponent(key)}` : '/');
  const all = await page.evaluate(() => window.ternd.gather({ timeoutMs: 15000 }));
  const relayOnly = await page.evaluate(() => window.ternd.gather({ relay: true, timeoutMs: 15000 }));
  await page.evaluate(() => window.ternd.gather({ timeoutMs: 15000 })); // leave the full table on screen
  await screenshot(page);
  let withoutKey = null;
  if (key) {
    const bare = await open(context, '/');
    withoutKey = await bare.evaluate(() => window.ternd.gather().then(() => 'no error', (e) => e.message));
  }
  return { ok: true, all, relayOnly, withoutKey };
}

const connected = (page, extra = 'true') => page.waitForFunction(
  `(() => { const s = window.ternd.state(); return s.connection === 'connected' && s.channel === 'open' && (${extra}); })()`,
  null, { timeout: WAIT, polling: 100 });

async function chat(from, to, text) {
  if (!await from.evaluate((t) => window.ternd.sendChat(t), text)) throw new Error(`chat not open for "${text}"`);
  await to.waitForFunction((t) => window.ternd.lastChat === t, text, { timeout: WAIT, polling: 100 });
}

async function call() {
  const path = '/?room=r1&relay=1&autostart=1&media=generated';
  const a = await open(await browser.newContext(), path);
  await a.waitForFunction(() => window.ternd.state().id, null, { timeout: WAIT });
  const b = await open(await browser.newContext(), path);
  await connected(a);
  await connected(b);
  await chat(a, b, 'hello from a');
  await chat(b, a, 'hello from b');
  const pairs = { a: await a.evaluate(() => window.ternd.selectedPair()), b: await b.evaluate(() => window.ternd.selectedPair()) };
  const before = { a: await a.evaluate(() => window.ternd.state()), b: await b.evaluate(() => window.ternd.state()) };
  await screenshot(a);

  // The signaling socket drops: a resumes its id; then an ICE restart.
  await a.evaluate(() => window.ternd.dropSocket());
  await a.waitForFunction(() => window.ternd.state().socket.startsWith('open'), null, { timeout: WAIT, polling: 100 });
  await a.evaluate(() => window.ternd.restartIce());
  await connected(a, `s.ufrag !== ${JSON.stringify(before.a.ufrag)} && s.signaling === 'stable'`);
  await connected(b, `s.ufrag !== ${JSON.stringify(before.b.ufrag)} && s.signaling === 'stable'`);
  await chat(a, b, 'after the restart');
  const after = { a: await a.evaluate(() => window.ternd.state()), b: await b.evaluate(() => window.ternd.state()) };
  const pairsAfter = { a: await a.evaluate(() => window.ternd.selectedPair()), b: await b.evaluate(() => window.ternd.selectedPair()) };
  return { ok: true, pairs, pairsAfter, before, after, chatB: await b.evaluate(() => window.ternd.chat) };
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
  await screenshot(a);
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
      : scenario === 'cluster-call' ? clusterCall(key)
        : { ok: false, error: `unknown scenario ${scenario}` };
});
