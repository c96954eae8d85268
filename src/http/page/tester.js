// The ICE server tester: an editable list of ICE server URLs (pre-filled
// from /api/ice-servers, or from a pasted RTCConfiguration), one
// RTCPeerConnection per URL, and per URL what it yielded (srflx, relay, an
// error code explained in plain words, or nothing before the timeout), the
// time of each candidate, and the whole run as JSON.
const $ = (id) => document.getElementById(id);

// What an icecandidateerror code means (STUN/TURN codes from RFC 8489 §14.8
// and RFC 8656 §18; 701 is WebRTC's "no answer", RFC 8445 / W3C webrtc).
const EXPLAIN = {
  300: 'Try Alternate: the server redirects to another address; the browser follows it only over the same transport.',
  400: 'Bad Request: the server could not parse the request.',
  401: 'Unauthorized: the server refused this username and credential — a typo, or REST credentials that have expired (they last for their ttl) or were minted with another secret.',
  403: 'Forbidden: the credential is right but the server refuses this client (a denied address, a revoked user, or a policy).',
  420: 'Unknown Attribute: the server does not understand a part of the request it must understand.',
  437: 'Allocation Mismatch: the server already holds an allocation for this client address; it clears when that one expires.',
  438: 'Stale Nonce: the server changed its nonce; browsers retry this by themselves, so seeing it here means the retry failed too.',
  440: 'Address Family not Supported: the server cannot relay over the requested IPv4/IPv6 family.',
  441: 'Wrong Credentials: the credential does not match the one this allocation was made with.',
  442: 'Unsupported Transport Protocol: the server does not relay this transport.',
  443: 'Peer Address Family Mismatch: the peer address family differs from the relayed address family.',
  486: 'Allocation Quota Reached: this user or client holds as many allocations as the server allows; close some and retry.',
  500: 'Server Error: the server failed for a reason of its own; try again.',
  508: 'Insufficient Capacity: the server has no relay port to spare right now.',
  701: 'No answer: the server is unreachable from this browser — wrong host or port, nothing listening there, a firewall dropping the packets, or a TCP/TLS connection that failed.',
};
const TIMEOUT_TEXT = (ms) => `No answer within ${ms} ms: the server is unreachable from this browser (like error 701) — wrong host or port, nothing listening there, or a firewall dropping the packets.`;

export const explain = (code) => EXPLAIN[code] ?? `Error ${code}: see RFC 8489 §14.8 / RFC 8656 §18 for this code.`;

// ---- the editable list ----------------------------------------------------

// One row per URL: {url, username, credential}.
function addRow({ url = '', username = '', credential = '' } = {}) {
  const tr = document.createElement('tr');
  const input = (cls, value, placeholder) => {
    const i = Object.assign(document.createElement('input'), { className: cls, value, placeholder, autocomplete: 'off', spellcheck: false });
    i.setAttribute('aria-label', cls);
    tr.insertCell().append(i);
  };
  input('url', url, 'stun:host:3478 or turn:host:3478?transport=udp');
  input('username', username, 'username');
  input('credential', credential, 'credential');
  const remove = Object.assign(document.createElement('button'), { type: 'button', className: 'remove', textContent: '×', title: 'remove' });
  remove.onclick = () => tr.remove();
  tr.insertCell().append(remove);
  $('server-rows').append(tr);
  return tr;
}

export function entries() {
  return [...$('server-rows').rows].map((tr) => ({
    url: tr.querySelector('.url').value.trim(),
    username: tr.querySelector('.username').value,
    credential: tr.querySelector('.credential').value,
  })).filter((e) => e.url);
}

// Replaces the list with the URLs of `iceServers` (RTCIceServer[]), one row each.
function fill(iceServers) {
  $('server-rows').textContent = '';
  for (const s of iceServers) {
    for (const url of [s.urls ?? s.url ?? []].flat()) addRow({ url, username: s.username ?? '', credential: s.credential ?? '' });
  }
}

// Fills the list from an RTCConfiguration (or a bare iceServers array, or
// /api/ice-servers' answer); also takes its pool size and transport policy.
export function applyConfig(text) {
  $('config-error').textContent = '';
  try {
    const c = JSON.parse(text);
    const servers = Array.isArray(c) ? c : c?.iceServers;
    if (!Array.isArray(servers)) throw new Error('expected {"iceServers": [...]} or an array of ICE servers');
    for (const s of servers) {
      const urls = [s?.urls ?? s?.url].flat();
      if (!urls.length || !urls.every((u) => typeof u === 'string')) throw new Error(`an ICE server without string urls: ${JSON.stringify(s)}`);
    }
    fill(servers);
    if (Number.isInteger(c.iceCandidatePoolSize)) $('pool-size').value = c.iceCandidatePoolSize;
    if (c.iceTransportPolicy) $('gather-relay').checked = c.iceTransportPolicy === 'relay';
    return true;
  } catch (e) {
    $('config-error').textContent = `not an RTCConfiguration: ${e.message}`;
    return false;
  }
}

// GET /api/ice-servers (with `?key=` from the page URL as a bearer key).
export async function fetchIceServers(apiKey) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const r = await fetch('/api/ice-servers', { headers, cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`/api/ice-servers: ${r.status} ${body.error?.message ?? r.statusText}`);
  $('servers').textContent = body.iceServers.flatMap((s) => s.urls).join(', ');
  return body.iceServers;
}

let loaded = null; // the last fetch of /api/ice-servers (a promise)

export function reload(apiKey) {
  loaded = fetchIceServers(apiKey).then(fill, (e) => {
    $('servers').textContent = e.message;
    throw e;
  });
  loaded.catch(() => {});
  return loaded;
}

// ---- gathering, one peer connection per URL -------------------------------

// The fields of an RTCIceCandidate worth showing.
export function describe(c) {
  return {
    type: c.type, protocol: c.protocol, address: c.address, port: c.port, priority: c.priority,
    relatedAddress: c.relatedAddress, relatedPort: c.relatedPort,
    // Chromium leaves relayProtocol null for TURN over UDP: read it off the URL.
    relayProtocol: c.relayProtocol ?? (c.type === 'relay' ? /transport=(\w+)/.exec(c.url ?? '')?.[1] ?? 'udp' : null),
    url: c.url, foundation: c.foundation, candidate: c.candidate,
  };
}

// type preference | local preference | 256 - component (RFC 8445 §5.1.2.1).
const priorityParts = (p) => `${p >>> 24} | ${(p >>> 8) & 0xffff} | ${256 - (p & 0xff)}`;

function cells(tbody, values, cls) {
  const tr = document.createElement('tr');
  if (cls) tr.className = cls;
  for (const text of values) tr.insertCell().textContent = text ?? '';
  tbody.append(tr);
  return tr;
}

// Gathers with one server entry and resolves to its result.
async function gatherOne(entry, { policy, poolSize, timeoutMs }) {
  const server = { urls: entry.url };
  if (entry.username) server.username = entry.username;
  if (entry.credential) server.credential = entry.credential;
  const result = { url: entry.url, username: entry.username || null, candidates: [], errors: [], ms: null, timedOut: false };
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: policy, iceCandidatePoolSize: poolSize });
  } catch (e) {
    // A malformed URL is refused by the constructor.
    result.ms = elapsed();
    result.errors.push({ code: null, text: `${e.name}: ${e.message}`, ms: result.ms });
    return result;
  }
  pc.onicecandidateerror = (e) => {
    const err = { code: e.errorCode, text: e.errorText, address: e.address, port: e.port, ms: elapsed() };
    result.errors.push(err);
    const li = Object.assign(document.createElement('li'), {
      textContent: `${entry.url}: ${err.code} ${err.text} (from ${err.address ?? '?'}:${err.port ?? '?'}) — ${explain(err.code)}`,
    });
    $('gather-errors').append(li);
  };
  const finished = new Promise((resolve) => {
    const finish = (timedOut) => {
      if (result.ms !== null) return;
      result.ms = elapsed();
      result.timedOut = timedOut;
      resolve();
    };
    pc.onicecandidate = (e) => {
      if (!e.candidate) return finish(false);
      if (!e.candidate.candidate) return; // an end-of-candidates marker
      const c = describe(e.candidate);
      c.ms = elapsed();
      result.candidates.push(c);
      const via = c.type === 'relay' ? `${c.relatedAddress}:${c.relatedPort} via ${c.relayProtocol ?? '?'}`
        : c.relatedAddress ? `${c.relatedAddress}:${c.relatedPort}` : '';
      const tr = cells($('candidates'), [c.ms, entry.url, c.type, c.protocol, c.address, c.port,
        `${c.priority} (${priorityParts(c.priority)})`, via], c.type);
      // In time order across the URLs' peer connections.
      tr.dataset.ms = c.ms;
      [...$('candidates').rows].find((r) => Number(r.dataset.ms) > c.ms)?.before(tr);
    };
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && finish(false);
    setTimeout(() => finish(true), timeoutMs);
  });
  pc.createDataChannel('gather'); // something to negotiate, so ICE starts
  await pc.setLocalDescription(await pc.createOffer());
  await finished;
  pc.close();
  return result;
}

// What a URL's result comes to: {outcome, cls, ms, code, explanation}. A
// turn: URL is after a relay candidate (Chromium also asks TURN/UDP servers
// for a srflx one, so a srflx alone does not make it work); a stun: URL is
// after a srflx candidate.
export function verdict(r, { timeoutMs, policy }) {
  const first = (type) => r.candidates.find((c) => c.type === type);
  const turn = /^turns?:/i.test(r.url);
  const relay = first('relay');
  if (relay) return { outcome: 'relay found', cls: 'relay', ms: relay.ms, code: null, explanation: `A relay address ${relay.address}:${relay.port} allocated over ${relay.relayProtocol}: TURN works with this credential.` };
  const srflx = first('srflx');
  const mapped = srflx && `${srflx.address}:${srflx.port}`;
  if (srflx && !turn) return { outcome: 'srflx found', cls: 'srflx', ms: srflx.ms, code: null, explanation: `The server sees this browser as ${mapped} (the address peers outside your NAT would use).` };
  const also = srflx ? ` (It did answer a plain STUN Binding: it sees this browser as ${mapped}.)` : '';
  const err = r.errors[r.errors.length - 1];
  if (err) {
    const code = err.code;
    const explanation = (code === null ? `The browser refused the entry: ${err.text}` : explain(code)) + also;
    return { outcome: code === null ? 'invalid' : `error ${code}`, cls: code === 701 ? 'unreachable' : 'error', ms: err.ms, code, explanation };
  }
  if (r.timedOut) return { outcome: 'timed out', cls: 'unreachable', ms: r.ms, code: null, explanation: TIMEOUT_TEXT(timeoutMs) + also };
  const why = !turn && policy === 'relay' ? '"relay only" is ticked, and a stun: URL yields no relay candidates.'
    : turn ? `Gathering finished without a relay candidate and without an error.${also}`
      : 'Gathering finished without a server-reflexive candidate: the mapped address equals a host address (no NAT between here and the server), or the browser had no address of this family.';
  return { outcome: turn ? 'no relay' : 'no srflx', cls: 'none', ms: r.ms, code: null, explanation: why };
}

let results = null; // the last run, as written to #results-json

export const lastResults = () => results;

// Gathers with every entry in parallel. Resolves to the results document:
// {startedAt, iceTransportPolicy, iceCandidatePoolSize, timeoutMs, ms, servers: [...]}.
export async function gatherAll({ relay, timeoutMs, poolSize } = {}) {
  relay ??= $('gather-relay').checked;
  timeoutMs ??= Number($('gather-timeout').value) || 10000;
  poolSize ??= Math.max(0, Math.min(10, Number($('pool-size').value) || 0));
  const status = (s) => { $('gather-status').textContent = s; };
  for (const id of ['candidates', 'gather-errors', 'url-rows']) $(id).textContent = '';
  $('gather').disabled = true;
  try {
    let list = entries();
    if (!list.length && loaded) {
      status('fetching iceServers…');
      await loaded; // a failed fetch rejects here, with its message
      list = entries();
    }
    if (!list.length) throw new Error('no ICE server URLs to test');
    status(`gathering with ${list.length} URLs…`);
    const opts = { policy: relay ? 'relay' : 'all', poolSize, timeoutMs };
    const rows = list.map((e) => cells($('url-rows'), [e.url, 'gathering…', '', '', ''], 'pending'));
    const t0 = performance.now();
    const servers = await Promise.all(list.map(async (e, i) => {
      const r = await gatherOne(e, opts);
      const v = verdict(r, opts);
      const tr = rows[i];
      tr.className = v.cls;
      tr.dataset.url = r.url;
      [, tr.cells[1].textContent, tr.cells[2].textContent, tr.cells[3].textContent, tr.cells[4].textContent] = [
        r.url, v.outcome, `${v.ms} ms`, `${r.candidates.length} (${[...new Set(r.candidates.map((c) => c.type))].join(', ') || 'none'})`, v.explanation];
      return { ...r, ...v };
    }));
    results = {
      startedAt: new Date(Date.now() - (performance.now() - t0)).toISOString(),
      iceTransportPolicy: opts.policy, iceCandidatePoolSize: poolSize, timeoutMs,
      ms: Math.round(performance.now() - t0), servers,
    };
    $('results-json').textContent = JSON.stringify(results, null, 2);
    $('copy-results').disabled = false;
    const n = servers.reduce((k, s) => k + s.candidates.length, 0);
    status(`${n} candidates from ${servers.length} URLs in ${results.ms} ms`);
    return results;
  } catch (e) {
    status('failed');
    $('gather-errors').append(Object.assign(document.createElement('li'), { textContent: e.message }));
    throw e;
  } finally {
    $('gather').disabled = false;
  }
}

// The clipboard where allowed, else the JSON selected for the user to copy.
async function copyResults() {
  const text = $('results-json').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('gather-status').textContent = 'results copied as JSON';
  } catch {
    $('results').open = true;
    getSelection().selectAllChildren($('results-json'));
    $('gather-status').textContent = 'no clipboard access: the JSON below is selected, copy it with Ctrl+C';
  }
}

// Wires the section's buttons and starts the pre-fill.
export function setup(apiKey) {
  $('add-server').onclick = () => addRow().querySelector('.url').focus();
  $('reload-servers').onclick = () => reload(apiKey).catch(() => {});
  $('clear-servers').onclick = () => { $('server-rows').textContent = ''; };
  $('apply-config').onclick = () => applyConfig($('config-json').value);
  $('gather').onclick = () => gatherAll().catch(() => {});
  $('copy-results').onclick = () => copyResults();
  reload(apiKey).catch(() => {});
}
