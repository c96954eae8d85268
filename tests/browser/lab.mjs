// Headless Chromium for the NAT lab (tests/nat_lab_browser.rs): run inside a
// lab node with `ip netns exec`, it prints one JSON line.
//
//   node lab.mjs gather <page-url> [ms]     the sample page's gatherer (window.ternd.gather),
//                                           giving up after ms (default 20000; gathering
//                                           behind a UDP-blocking firewall waits out STUN)
//   node lab.mjs call <page-url> <name>     the sample call: wait until connected, send
//                                           "hello from <name>", wait for the other side's hello
//   node lab.mjs pair <config-a> <config-b> two RTCPeerConnections on a blank page, each with
//                                           its own RTCConfiguration (JSON), a data channel
//                                           between them, then their selected pairs
//
// TURN over TLS: Chromium checks the server certificate against NSS, so the
// caller points HOME at a directory whose .pki/nssdb trusts the lab CA.
import { runScenario, WAIT } from './harness.mjs';

const [scenario, ...args] = process.argv.slice(2);
let browser;
let pageErrors;

async function open(url) {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  await page.goto(url, { timeout: WAIT });
  return page;
}

async function gather(url, ms = '20000') {
  const page = await open(url);
  await page.waitForFunction(() => window.ternd, null, { timeout: WAIT });
  const all = await page.evaluate((timeoutMs) => window.ternd.gather({ timeoutMs }), Number(ms));
  return { ok: true, all };
}

async function call(url, name) {
  const page = await open(url);
  await page.waitForFunction(() => window.ternd, null, { timeout: WAIT });
  await page.waitForFunction(() => {
    const s = window.ternd.state();
    return s.connection === 'connected' && s.channel === 'open';
  }, null, { timeout: WAIT, polling: 100 });
  await page.evaluate((t) => window.ternd.sendChat(t), `hello from ${name}`);
  await page.waitForFunction(() => window.ternd.chat.some((m) => m.from !== 'me'), null, { timeout: WAIT, polling: 100 });
  const received = await page.evaluate(() => window.ternd.chat.filter((m) => m.from !== 'me').map((m) => m.text));
  const pair = await page.evaluate(() => window.ternd.selectedPair());
  // Stay a moment so the other side surely gets our hello before we hang up.
  await page.waitForTimeout(1500);
  return { ok: true, received, pair };
}

// Runs in the page: two peer connections wired to each other directly.
async function pairInPage([configA, configB, timeoutMs]) {
  const a = new RTCPeerConnection(configA);
  const b = new RTCPeerConnection(configB);
  const errors = [];
  for (const [pc, other, side] of [[a, b, 'a'], [b, a, 'b']]) {
    pc.onicecandidate = (e) => e.candidate && other.addIceCandidate(e.candidate).catch((x) => errors.push(`${side}: ${x}`));
    pc.onicecandidateerror = (e) => errors.push(`${side}: ${e.url} ${e.errorCode} ${e.errorText}`);
  }
  const received = new Promise((resolve) => {
    b.ondatachannel = (e) => { e.channel.onmessage = (m) => resolve(m.data); };
  });
  const dc = a.createDataChannel('lab');
  const opened = new Promise((resolve) => { dc.onopen = resolve; });
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`not connected in ${timeoutMs} ms: ${a.connectionState}/${b.connectionState}; ${errors.join('; ')}`)), timeoutMs));
  await Promise.race([opened, timeout]);
  dc.send('hello through the lab');
  const message = await Promise.race([received, timeout]);
  const selected = async (pc) => {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
    const cand = (id) => { const c = stats.get(id); return c && { type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol }; };
    return pair && { local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId), bytesSent: pair.bytesSent };
  };
  const result = { message, a: await selected(a), b: await selected(b), errors };
  a.close();
  b.close();
  return result;
}

async function pair(configA, configB) {
  const page = await open('about:blank');
  const r = await page.evaluate(pairInPage, [JSON.parse(configA), JSON.parse(configB), 20000]);
  return { ok: true, ...r };
}

await runScenario('lab.mjs', 55000, async (b, errors) => {
  [browser, pageErrors] = [b, errors];
  return scenario === 'gather' ? gather(args[0], args[1])
    : scenario === 'call' ? call(args[0], args[1])
      : scenario === 'pair' ? pair(args[0], args[1])
        : { ok: false, error: `unknown scenario ${scenario}` };
});
