// ternd sample peers: (1) the ICE server tester (tester.js), (2) a two-peer
// call over ternd's signaling socket (/ws) with a data-channel chat and live
// pair statistics (stats.js). Plain ES modules, no build step. Test hooks
// live on `window.ternd` (end of file).
import * as tester from './tester.js';
import { fetchIceServers } from './tester.js';
import * as stats from './stats.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const apiKey = params.get('key');

// iceServers from /api/ice-servers for the call.
async function iceConfig(relay) {
  return { iceServers: await fetchIceServers(apiKey), iceTransportPolicy: relay ? 'relay' : 'all' };
}

// The tester's run in the shape of one gathering: every URL's candidates
// and errors together, and whether any URL timed out.
async function gather(opts) {
  const r = await tester.gatherAll(opts);
  return {
    ...r,
    candidates: r.servers.flatMap((s) => s.candidates),
    errors: r.servers.flatMap((s) => s.errors.map((e) => ({ url: s.url, ...e }))),
    timedOut: r.servers.some((s) => s.timedOut),
  };
}

// ---- (2) two-peer call --------------------------------------------------

const call = {
  wanted: false, room: null, relay: false, config: null,
  ws: null, socket: 'closed', id: null, resume: null, peers: new Set(), retry: 0, timers: {},
  awaitingWelcome: false, sentResume: false, queue: Promise.resolve(),
  peer: null, pc: null, dc: null, polite: false, makingOffer: false, ignoreOffer: false,
  local: null, media: '', restarts: 0, pair: null, samples: [], chat: [], lastChat: null,
};

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  const ol = $('call-log');
  ol.append(li);
  while (ol.children.length > 60) ol.firstChild.remove();
  ol.scrollTop = ol.scrollHeight;
}

function render() {
  const pc = call.pc;
  $('st-socket').textContent = call.socket;
  $('st-ids').textContent = `${call.id ?? '–'} / ${call.peer ?? (call.id ? 'waiting for a peer' : '–')}`;
  $('st-ice').textContent = pc ? `${pc.iceConnectionState} (gathering ${pc.iceGatheringState}, ${call.restarts} restarts)` : '–';
  $('st-pc').textContent = pc ? `${pc.connectionState}, signaling ${pc.signalingState}, chat ${call.dc?.readyState ?? '–'}` : '–';
  $('st-pair').textContent = call.pair ? `${stats.where(call.pair.local)} ⇄ ${stats.where(call.pair.remote)}` : '–';
  $('st-media').textContent = call.media || '–';
  $('join').disabled = call.wanted;
  $('leave').disabled = !call.wanted;
  $('ice-restart').disabled = !call.pc;
  const open = call.dc?.readyState === 'open';
  $('chat-text').disabled = !open;
  $('chat-send').disabled = !open;
}

function send(m) {
  if (call.ws?.readyState !== WebSocket.OPEN || call.awaitingWelcome) {
    log(`signaling down: ${m.type} not sent`);
    return false;
  }
  call.ws.send(JSON.stringify(m));
  return true;
}

// Camera and microphone if allowed, else a generated canvas + oscillator stream.
async function localMedia() {
  if (params.get('media') !== 'generated') {
    try {
      const s = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      call.media = 'camera + microphone';
      return s;
    } catch (e) {
      log(`no camera/microphone (${e.name ?? e}): sending a generated stream`);
    }
  }
  const canvas = Object.assign(document.createElement('canvas'), { width: 320, height: 240 });
  const g = canvas.getContext('2d');
  const draw = () => {
    const t = performance.now() / 1000;
    g.fillStyle = '#27435f';
    g.fillRect(0, 0, 320, 240);
    g.fillStyle = '#6fb3e8';
    g.fillRect((t * 80) % 360 - 40, 180, 40, 40);
    g.fillStyle = '#fff';
    g.font = '20px sans-serif';
    g.fillText(`ternd · ${call.room ?? ''}`, 16, 40);
    g.fillText(`peer ${call.id ?? '…'}`, 16, 80);
    g.fillText(new Date().toISOString().slice(11, 22), 16, 120);
  };
  draw();
  call.timers.draw = setInterval(draw, 66);
  const stream = canvas.captureStream(15);
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    gain.gain.value = 0.05;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    stream.addTrack(dest.stream.getAudioTracks()[0]);
    call.audio = ctx;
  } catch (e) {
    log(`no generated audio: ${e}`);
  }
  call.media = 'generated (canvas + 440 Hz tone)';
  return stream;
}

async function join(room = $('room').value.trim() || 'demo', relay = $('call-relay').checked) {
  if (call.wanted) leave();
  Object.assign(call, { wanted: true, room, relay, id: null, resume: null, retry: 0, restarts: 0 });
  $('room').value = room;
  $('call-relay').checked = relay;
  render();
  call.config = await iceConfig(relay);
  if (!call.local) {
    call.local = await localMedia();
    $('local').srcObject = call.local;
  }
  connect();
}

function leave() {
  call.wanted = false;
  clearTimeout(call.timers.reconnect);
  if (call.ws) {
    if (call.ws.readyState === WebSocket.OPEN) call.ws.send('{"type":"leave"}'); // no resume grace
    call.ws.onclose = null;
    call.ws.close(1000);
    call.ws = null;
  }
  closePeer('left the room');
  call.socket = 'closed';
  call.id = null;
  call.peers.clear();
  render();
}

// ---- signaling socket: join, resume, keepalive, reconnect ----------------

function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  call.ws = ws;
  call.socket = 'connecting';
  render();
  ws.onopen = () => {
    const m = { type: 'join', room: call.room };
    if (call.resume) m.resume = call.resume;
    call.sentResume = !!call.resume;
    call.awaitingWelcome = true;
    ws.send(JSON.stringify(m));
    call.socket = 'joining';
    render();
    keepalive(ws);
  };
  ws.onmessage = (e) => {
    if (call.ws !== ws) return;
    clearTimeout(call.timers.pong);
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    // One message at a time, so an answer never overtakes its offer.
    call.queue = call.queue.then(() => onSignal(m)).catch((err) => log(`${m.type}: ${err}`)).then(render);
  };
  ws.onclose = (e) => {
    if (call.ws === ws) lostSocket(`closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`);
  };
}

// Forget the socket and dial again, backing off up to 5 s.
function lostSocket(why) {
  const ws = call.ws;
  call.ws = null;
  if (ws) {
    ws.onclose = ws.onmessage = null;
    ws.close();
  }
  clearInterval(call.timers.ping);
  clearTimeout(call.timers.pong);
  call.socket = why;
  render();
  if (!call.wanted) return;
  const delay = Math.min(250 * 2 ** call.retry++, 5000);
  log(`signaling ${why}; reconnecting in ${delay} ms`);
  clearTimeout(call.timers.reconnect);
  call.timers.reconnect = setTimeout(connect, delay);
}

// A ping every 15 s; no answer within 10 s means the socket is dead.
function keepalive(ws) {
  clearInterval(call.timers.ping);
  call.timers.ping = setInterval(() => {
    if (call.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send('{"type":"ping"}');
    clearTimeout(call.timers.pong);
    call.timers.pong = setTimeout(() => call.ws === ws && lostSocket('timed out'), 10000);
  }, 15000);
}

async function onSignal(m) {
  switch (m.type) {
    case 'welcome': {
      const resumed = call.id !== null && m.id === call.id;
      if (call.id !== null && !resumed) log(`signaling: new id ${m.id} (was ${call.id})`);
      call.awaitingWelcome = false;
      call.id = m.id;
      call.resume = m.resume ?? null;
      call.retry = 0;
      call.socket = `open, room ${call.room}`;
      call.peers = new Set(m.peers ?? []);
      log(`joined ${call.room} as ${m.id}${resumed ? ' (resumed)' : ''}; peers: ${[...call.peers].join(', ') || 'none'}`);
      if (call.peer && (!resumed || !call.peers.has(call.peer))) closePeer('peer session lost');
      if (!call.peer && call.peers.size) {
        startPeer([...call.peers][0]); // the newcomer makes the offer
      } else if (call.pc && !['connected', 'completed'].includes(call.pc.iceConnectionState)) {
        await restartIce('signaling reconnected');
      }
      break;
    }
    case 'peer-joined':
      call.peers.add(m.id);
      log(`peer ${m.id} joined`);
      if (!call.peer) call.peer = m.id; // it offers; we answer
      break;
    case 'peer-left':
      call.peers.delete(m.id);
      log(`peer ${m.id} left`);
      if (m.id === call.peer) {
        closePeer('peer left');
        if (call.peers.size) startPeer([...call.peers][0]);
      }
      break;
    case 'offer':
    case 'answer':
      if (m.from !== call.peer || !call.pc) {
        if (m.type === 'answer') return; // not to any offer of ours
        if (call.pc && ['connected', 'completed'].includes(call.pc.iceConnectionState)) {
          log(`busy: ${m.type} from ${m.from} ignored`);
          return;
        }
        if (call.peer !== m.from) closePeer(`switching to ${m.from}`);
        call.peer = m.from;
        if (!call.pc) createPc();
      }
      await onDescription({ type: m.type, sdp: m.sdp });
      break;
    case 'candidate':
      if (m.from === call.peer && call.pc && m.candidate) {
        try {
          await call.pc.addIceCandidate(m.candidate);
        } catch (e) {
          if (!call.ignoreOffer) log(`candidate: ${e}`);
        }
      }
      break;
    case 'pong':
      break;
    case 'error':
      log(`signaling error ${m.code}: ${m.message}`);
      if (call.awaitingWelcome && call.sentResume) {
        // The resume token was refused: join afresh with a new id.
        call.resume = null;
        call.sentResume = false;
        call.ws?.send(JSON.stringify({ type: 'join', room: call.room }));
      }
      break;
    default:
      log(`unknown message ${m.type}`);
  }
}

// ---- the peer connection: perfect negotiation, ICE restarts, chat --------

function startPeer(id) {
  call.peer = id;
  createPc();
}

function createPc() {
  const pc = new RTCPeerConnection(call.config);
  Object.assign(call, { pc, polite: call.id < call.peer, makingOffer: false, ignoreOffer: false, pair: null });
  log(`calling ${call.peer} (${call.polite ? 'polite' : 'impolite'}, ${call.config.iceTransportPolicy})`);
  for (const t of call.local.getTracks()) pc.addTrack(t, call.local);
  setupChat(pc.createDataChannel('chat', { negotiated: true, id: 0 }));
  pc.onnegotiationneeded = async () => {
    try {
      call.makingOffer = true;
      await pc.setLocalDescription();
      send({ type: pc.localDescription.type, to: call.peer, sdp: pc.localDescription.sdp });
    } catch (e) {
      log(`offer: ${e}`);
    } finally {
      call.makingOffer = false;
    }
  };
  pc.onicecandidate = ({ candidate }) => {
    if (pc === call.pc && candidate?.candidate) send({ type: 'candidate', to: call.peer, candidate: candidate.toJSON() });
  };
  pc.ontrack = ({ track, streams }) => {
    $('remote').srcObject = streams[0] ?? new MediaStream([track]);
  };
  pc.oniceconnectionstatechange = () => {
    if (pc !== call.pc) return;
    const s = pc.iceConnectionState;
    log(`ICE ${s}`);
    if (s === 'failed') restartIce('ICE failed');
    if (s === 'disconnected') {
      clearTimeout(call.timers.disconnected);
      call.timers.disconnected = setTimeout(() => {
        if (pc === call.pc && pc.iceConnectionState === 'disconnected') restartIce('ICE disconnected for 3 s');
      }, 3000);
    }
    render();
  };
  pc.onsignalingstatechange = pc.onicegatheringstatechange = render;
  // getStats() once a second: the selected pair, the others, the bitrate.
  const poll = async () => {
    const reading = await stats.read(pc);
    if (pc !== call.pc) return;
    call.pair = reading.selected;
    stats.push(call.samples, reading);
    stats.render(call.samples);
    render();
  };
  pc.onconnectionstatechange = () => poll().catch(() => {});
  clearInterval(call.timers.stats);
  call.samples = [];
  stats.clear();
  call.timers.stats = setInterval(() => poll().catch(() => {}), 1000);
  render();
}

async function onDescription(description) {
  const pc = call.pc;
  const collision = description.type === 'offer' && (call.makingOffer || pc.signalingState !== 'stable');
  call.ignoreOffer = !call.polite && collision;
  if (call.ignoreOffer) {
    log('offer collision: ignoring theirs');
    return;
  }
  await pc.setRemoteDescription(description); // rolls back our own offer on a collision
  if (description.type === 'offer') {
    await pc.setLocalDescription();
    send({ type: 'answer', to: call.peer, sdp: pc.localDescription.sdp });
  }
}

// New ICE credentials, so both sides gather afresh (fires negotiationneeded).
async function restartIce(why) {
  const pc = call.pc;
  if (!pc) return false;
  log(`ICE restart: ${why}`);
  call.restarts++;
  if (pc.signalingState === 'have-local-offer') {
    await pc.setLocalDescription({ type: 'rollback' }); // its answer may be lost
  }
  pc.restartIce();
  render();
  return true;
}

function closePeer(why) {
  if (call.pc) {
    log(`call closed: ${why}`);
    call.pc.close();
  }
  clearInterval(call.timers.stats);
  Object.assign(call, { pc: null, dc: null, peer: null, pair: null });
  $('remote').srcObject = null;
  render();
}

function setupChat(dc) {
  call.dc = dc;
  const add = (from, text) => {
    call.chat.push({ from, text });
    const li = document.createElement('li');
    li.textContent = `${from}: ${text}`;
    $('chat-log').append(li);
    $('chat-log').scrollTop = $('chat-log').scrollHeight;
  };
  dc.onopen = () => { log('chat open'); render(); };
  dc.onclose = render;
  dc.onmessage = (e) => {
    call.lastChat = String(e.data);
    add('peer', call.lastChat);
  };
  call.addChat = add;
}

function sendChat(text) {
  if (call.dc?.readyState !== 'open') return false;
  call.dc.send(text);
  call.addChat('me', text);
  return true;
}

// The selected pair from getStats: {local, remote} candidates, byte counts and RTT.
async function selectedPair(pc = call.pc) {
  return pc ? (await stats.read(pc)).selected : null;
}

// ---- wiring --------------------------------------------------------------

tester.setup(apiKey);
$('join').onclick = () => join().catch((e) => { log(`join: ${e.message}`); leave(); });
$('leave').onclick = () => leave();
$('ice-restart').onclick = () => restartIce('requested on the page');
$('chat-form').onsubmit = (e) => {
  e.preventDefault();
  if (sendChat($('chat-text').value)) $('chat-text').value = '';
};
// A reload or a closed tab leaves at once, rather than after the resume grace.
addEventListener('pagehide', () => call.ws?.readyState === WebSocket.OPEN && call.ws.send('{"type":"leave"}'));
if (params.get('room')) $('room').value = params.get('room');
if (params.get('relay') === '1') $('gather-relay').checked = $('call-relay').checked = true;
render();

window.ternd = {
  gather, // ({relay, timeoutMs, poolSize}) -> the results document plus {candidates, errors, timedOut} over all URLs
  applyConfig: tester.applyConfig, // (RTCConfiguration JSON text) -> true when the list was filled
  get results() { return tester.lastResults(); },
  join, // (room, relay)
  leave,
  sendChat, // (text) -> false when the channel is not open
  selectedPair: () => selectedPair(),
  restartIce: () => restartIce('requested'),
  stats: () => ({ samples: call.samples, pair: call.pair }),
  dropSocket: () => lostSocket('dropped on request'),
  state: () => ({
    socket: call.socket, id: call.id, peer: call.peer, peers: [...call.peers], media: call.media,
    ice: call.pc?.iceConnectionState ?? null, connection: call.pc?.connectionState ?? null,
    signaling: call.pc?.signalingState ?? null, channel: call.dc?.readyState ?? null, restarts: call.restarts,
    ufrag: /a=ice-ufrag:(\S+)/.exec(call.pc?.localDescription?.sdp ?? '')?.[1] ?? null,
  }),
  get chat() { return call.chat; },
  get lastChat() { return call.lastChat; },
};
if (params.get('autostart') === '1') $('join').click();
