// Live statistics of the call's peer connection, read from getStats() once a
// second: the selected candidate pair (RTT, bytes), the other (losing) pairs
// with their state, and the bitrate over the last minute as an SVG graph.
const $ = (id) => document.getElementById(id);

export const GRAPH_SECONDS = 60;

const candidate = (stats, id) => {
  const c = stats.get(id);
  return c && { type: c.candidateType, protocol: c.protocol, address: c.address, port: c.port, relayProtocol: c.relayProtocol, url: c.url };
};

const pairOf = (stats, p) => ({
  id: p.id, local: candidate(stats, p.localCandidateId), remote: candidate(stats, p.remoteCandidateId), state: p.state,
  nominated: !!p.nominated, bytesSent: p.bytesSent ?? 0, bytesReceived: p.bytesReceived ?? 0, rtt: p.currentRoundTripTime ?? null,
});

// One reading: {t, selected, others, bytesSent, bytesReceived} where the
// byte totals are the transports' (they keep counting across a pair switch).
export async function read(pc) {
  const stats = await pc.getStats();
  let selected = null;
  const pairs = [];
  let bytesSent = 0;
  let bytesReceived = 0;
  stats.forEach((r) => {
    if (r.type === 'transport') {
      bytesSent += r.bytesSent ?? 0;
      bytesReceived += r.bytesReceived ?? 0;
      if (r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
    }
    if (r.type === 'candidate-pair') pairs.push(r);
  });
  const sel = selected && stats.get(selected);
  return {
    t: performance.now(), bytesSent, bytesReceived,
    selected: sel ? pairOf(stats, sel) : null,
    others: pairs.filter((p) => p.id !== selected).map((p) => pairOf(stats, p)),
  };
}

// Appends a reading to `samples` (at most GRAPH_SECONDS + 1 kept) with the
// bitrates since the one before, in bit/s.
export function push(samples, reading) {
  const prev = samples[samples.length - 1];
  const dt = prev ? (reading.t - prev.t) / 1000 : 0;
  const rate = (now, before) => (dt > 0 ? Math.max(0, (now - before) * 8 / dt) : 0);
  samples.push({
    ...reading,
    sendBps: prev ? rate(reading.bytesSent, prev.bytesSent) : 0,
    recvBps: prev ? rate(reading.bytesReceived, prev.bytesReceived) : 0,
  });
  while (samples.length > GRAPH_SECONDS + 1) samples.shift();
}

const bytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);
const bits = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} Mbit/s` : `${(n / 1e3).toFixed(0)} kbit/s`);
const ms = (s) => (s === null || s === undefined ? '–' : `${(s * 1000).toFixed(1)} ms`);
export const where = (c) => (c ? `${c.type} ${c.protocol} ${c.address}:${c.port}${c.relayProtocol ? ` (via ${c.relayProtocol})` : ''}` : '?');

// Shows the latest sample: RTT, bytes, bitrate, the graph and the other pairs.
export function render(samples) {
  const s = samples[samples.length - 1];
  const sel = s?.selected;
  $('st-rtt').textContent = sel ? ms(sel.rtt) : '–';
  $('st-bytes').textContent = sel ? `sent ${bytes(sel.bytesSent)}, received ${bytes(sel.bytesReceived)}` : '–';
  $('st-bitrate').textContent = s && samples.length > 1 ? `sent ${bits(s.sendBps)}, received ${bits(s.recvBps)}` : '–';
  // The raw numbers, for tests and for anyone reading the DOM.
  Object.assign($('st-rtt').dataset, { ms: sel && sel.rtt !== null ? String(sel.rtt * 1000) : '' });
  Object.assign($('st-bytes').dataset, { sent: sel?.bytesSent ?? '', received: sel?.bytesReceived ?? '' });
  Object.assign($('st-bitrate').dataset, { sent: s?.sendBps ?? '', received: s?.recvBps ?? '' });
  graph(samples.slice(1));

  const tbody = $('other-pairs');
  tbody.textContent = '';
  for (const p of s?.others ?? []) {
    const tr = document.createElement('tr');
    tr.className = p.state;
    for (const text of [where(p.local), where(p.remote), p.state, p.nominated ? 'yes' : 'no', ms(p.rtt), `${bytes(p.bytesSent)} / ${bytes(p.bytesReceived)}`]) {
      tr.insertCell().textContent = text;
    }
    tbody.append(tr);
  }
}

// Two polylines (sent, received) scaled to the largest rate shown.
function graph(points) {
  const [w, h, top] = [300, 85, 5];
  const max = Math.max(1000, ...points.flatMap((p) => [p.sendBps, p.recvBps]));
  const line = (key) => points.map((p, i) => {
    const x = (GRAPH_SECONDS - points.length + 1 + i) * (w / GRAPH_SECONDS);
    return `${x.toFixed(1)},${(h - (p[key] / max) * (h - top)).toFixed(1)}`;
  }).join(' ');
  $('graph-send').setAttribute('points', line('sendBps'));
  $('graph-recv').setAttribute('points', line('recvBps'));
  $('graph-max').textContent = points.length ? bits(max) : '–';
}

export function clear() {
  render([]);
}
