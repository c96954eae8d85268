// Gathers ICE candidates with libjuice (node-datachannel's prebuilt
// libdatachannel) through one TURN server, relay candidates only, and prints
// one JSON line: {"ok":bool,"candidates":[{type,address,port}],"error":...}.
// Usage: node gather.mjs turn:USER:PASS@HOST:PORT?transport=udp
import nodeDataChannel from 'node-datachannel';

const [turnUrl] = process.argv.slice(2);
const LIMIT_MS = 20000;

function parse(c) {
  // "a=candidate:1 1 UDP 1234 127.0.0.1 61000 typ relay raddr ..." or without "a=".
  const f = c.replace(/^a=/, '').split(' ');
  return { type: f[7], protocol: f[2], address: f[4], port: Number(f[5]) };
}

nodeDataChannel.initLogger(process.env.JUICE_LOG || 'Warning', (level, message) => console.error(`[${level}] ${message}`));
const pc = new nodeDataChannel.PeerConnection('gatherer', {
  iceServers: [turnUrl],
  iceTransportPolicy: 'relay',
});
const candidates = [];
let done = false;
function finish(ok, error) {
  if (done) return;
  done = true;
  console.log(JSON.stringify({ ok, candidates, error }));
  try { pc.close(); } catch { /* closing is best effort */ }
  nodeDataChannel.cleanup();
  process.exit(ok ? 0 : 1);
}
pc.onLocalCandidate((c) => candidates.push(parse(c)));
pc.onGatheringStateChange((state) => {
  if (state === 'complete') finish(candidates.some((c) => c.type === 'relay'), null);
});
setTimeout(() => finish(false, 'gathering did not complete'), LIMIT_MS);
pc.createDataChannel('probe');
