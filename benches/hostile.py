#!/usr/bin/env python3
"""Hostile-load figures (issue 12): what strangers who never authenticate
can make one ternd process hold, and whether an honest client is still
served meanwhile.

    python3 benches/hostile.py [--ternd target/release/ternd] [--conns 10000]

Starts the real binary on 127.0.0.1 (UDP, TCP, TLS, HTTP on free ports, the
embedded defaults otherwise, so the figures show the default budgets), then
for each attack prints the server's open fds and RSS before and during it,
how many of the attacker's connections the server still holds, and the
honest client's success rate (HTTP /healthz, STUN Binding over UDP and TCP,
each tried 20 times during the attack). Last, the amplification factor of
the smallest request of each kind, with and without IP/UDP headers.

All traffic stays on 127.0.0.0/8; every loop is bounded; the server is
stopped by PID.
"""

import argparse
import base64
import hashlib
import hmac
import os
import resource
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

MAGIC = 0x2112A442
SECRET = "hostile-bench-secret-0123456789"
HONEST_TRIES = 20
# Longer than the default stream.write_stall_timeout (30s), so clients that
# never read are seen cut off.
STALL_WAIT = 45


# ---------------------------------------------------------------- STUN bits

def attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack("!HH", t, len(v)) + v + b"\0" * pad


def message(mtype, attrs=b"", tid=None):
    tid = tid or os.urandom(12)
    return struct.pack("!HHI", mtype, len(attrs), MAGIC) + tid + attrs


def with_integrity(mtype, attrs, key):
    """Appends MESSAGE-INTEGRITY (RFC 8489 §14.5) over the message so far."""
    tid = os.urandom(12)
    head = struct.pack("!HHI", mtype, len(attrs) + 24, MAGIC) + tid
    mac = hmac.new(key, head + attrs, hashlib.sha1).digest()
    return head + attrs + attr(0x0008, mac)


def attrs_of(resp):
    out, i = {}, 20
    while i + 4 <= len(resp):
        t, n = struct.unpack("!HH", resp[i : i + 4])
        out.setdefault(t, resp[i + 4 : i + 4 + n])
        i += 4 + n + (4 - n % 4) % 4
    return out


def rest_credentials(user, ttl=3600):
    username = f"{int(time.time()) + ttl}:{user}"
    password = base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


# ---------------------------------------------------------------- server

def raise_fd_limit():
    """The soft fd limit up to the hard one (as systemd's LimitNOFILE does)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Ternd:
    def __init__(self, binary, workdir, nofile):
        self.udp, self.tcp, self.tls, self.http = (
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_STREAM),
            free_port(socket.SOCK_STREAM),
            free_port(socket.SOCK_STREAM),
        )
        cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
            check=True, capture_output=True,
        )
        sets = {
            "listen.udp": f"127.0.0.1:{self.udp}",
            "listen.tcp": f"127.0.0.1:{self.tcp}",
            "listen.tls": f"127.0.0.1:{self.tls}",
            "tls.cert_file": cert,
            "tls.key_file": key,
            "http.listen": f"127.0.0.1:{self.http}",
            "relay.ipv4": "127.0.0.1",
            "turn.secrets": SECRET,
            "server.shards": "1",
            "log.level": "error",
        }
        args = [binary]
        for k, v in sets.items():
            args += ["--set", f"{k}={v}"]

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.log = open(os.path.join(workdir, "ternd.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, preexec_fn=limits)
        deadline = time.time() + 20
        while time.time() < deadline:
            if honest_http(self) and honest_udp(self):
                return
            time.sleep(0.1)
        self.stop()
        sys.exit("ternd did not come up; see " + self.log.name)

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metric(self, name):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- honest client

def honest_http(t):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{t.http}/healthz", timeout=2).status == 200
    except OSError:
        return False


def honest_udp(t):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(message(0x0001), ("127.0.0.1", t.udp))
        return s.recv(2048)[:2] == b"\x01\x01"
    except OSError:
        return False
    finally:
        s.close()


def honest_tcp(t):
    try:
        with socket.create_connection(("127.0.0.1", t.tcp), timeout=2) as s:
            s.settimeout(2)
            s.sendall(message(0x0001))
            return s.recv(2048)[:2] == b"\x01\x01"
    except OSError:
        return False


def honest_rate(t):
    ok = {"http": 0, "udp": 0, "tcp": 0}
    for _ in range(HONEST_TRIES):
        ok["http"] += honest_http(t)
        ok["udp"] += honest_udp(t)
        ok["tcp"] += honest_tcp(t)
    return " ".join(f"{k} {100 * v // HONEST_TRIES}%" for k, v in ok.items())


# ---------------------------------------------------------------- attacks

def source(i, many):
    """The attacker's source address: one, or a different one per connection."""
    return f"127.1.{i // 250}.{i % 250 + 1}" if many else "127.0.0.2"


def open_idle(port, n, many, tls=False):
    """Opens up to n connections that never send a byte (or, for TLS,
    finish the handshake and then say nothing). Returns the sockets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    socks, deadline = [], time.time() + 120
    for i in range(n):
        if time.time() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((source(i, many), 0))
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
            if tls:
                s = ctx.wrap_socket(s, server_hostname="localhost")
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks


def still_open(socks):
    """How many of the sockets the server has not closed: no FIN (POLLRDHUP,
    seen even with unread data waiting), no RST (POLLHUP/POLLERR)."""
    poller = select.poll()
    n = 0
    for s in socks:
        try:
            poller.register(s.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
            n += 1
        except (OSError, ValueError):
            pass
    closed = sum(1 for _, ev in poller.poll(0) if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR))
    return n - closed


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def idle_attack(t, name, port, n, many, tls=False):
    fd0, rss0 = t.fds(), t.rss_kib()
    start = time.time()
    socks = open_idle(port, n, many, tls)
    time.sleep(1)
    fd1, rss1, held = t.fds(), t.rss_kib(), still_open(socks)
    honest = honest_rate(t)
    close_all(socks)
    print(
        f"| {name} | {'many' if many else 'one'} | {len(socks)} | {held} | {fd0} → {fd1} | "
        f"{rss0 // 1024} → {rss1 // 1024} | {honest} | {time.time() - start:.0f} s |"
    )
    time.sleep(2)


def non_reading_attack(t, n, requests_each):
    """n TCP clients with a tiny receive buffer each send Binding requests
    and never read the answers."""
    rss0 = t.rss_kib()
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((f"127.2.{i // 250}.{i % 250 + 1}", 0))
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", t.tcp))
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    burst = b"".join(message(0x0001) for _ in range(requests_each))
    sent, peak, deadline = 0, rss0, time.time() + 60
    pending = {s: memoryview(burst) for s in socks}
    while pending and time.time() < deadline:
        for s in list(pending):
            try:
                k = s.send(pending[s])
                sent += k
                pending[s] = pending[s][k:]
                if not pending[s]:
                    del pending[s]
            except BlockingIOError:
                pass
            except OSError:
                del pending[s]
        peak = max(peak, t.rss_kib())
    time.sleep(1)
    peak = max(peak, t.rss_kib())
    queued = t.metric("ternd_stream_queued_bytes")
    exhausted = t.metric("ternd_budget_exhausted_total")
    honest = honest_rate(t)
    held = still_open(socks)
    time.sleep(STALL_WAIT)
    held_later = still_open(socks)
    close_all(socks)
    print(f"| attack | server RSS MiB | queued bytes (gauge) | still open after 1 s / {STALL_WAIT} s | budget refusals | honest client |")
    print("|---|---|---:|---|---:|---|")
    print(
        f"| {len(socks)} non-reading TCP clients, {requests_each} Bindings each ({sent // 1024} KiB sent) | "
        f"{rss0 // 1024} → peak {peak // 1024} | {queued} | {held} / {held_later} | {exhausted} | {honest} |"
    )


# ---------------------------------------------------------------- amplification

def udp_exchange(t, data):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(data, ("127.0.0.1", t.udp))
        return s.recv(4096)
    except OSError:
        return b""
    finally:
        s.close()


def amplification(t):
    transport = attr(0x0019, bytes([17, 0, 0, 0]))
    peer = attr(0x0012, struct.pack("!BBH", 0, 1, 3478 ^ (MAGIC >> 16)) + struct.pack("!I", 0x7F000001 ^ MAGIC))
    channel = attr(0x000C, struct.pack("!HH", 0x4000, 0))
    # A nonce and realm to sign with: from a first challenge.
    challenge = attrs_of(udp_exchange(t, message(0x0003, transport)))
    realm, nonce = challenge.get(0x0014, b"ternd"), challenge.get(0x0015, b"")
    user, password = rest_credentials("bench")
    good_key = hashlib.md5(f"{user}:{realm.decode()}:{password}".encode()).digest()
    bad_key = hashlib.md5(f"{user}:{realm.decode()}:wrong".encode()).digest()
    auth = attr(0x0006, user.encode()) + attr(0x0014, realm) + attr(0x0015, nonce)
    cases = [
        ("Binding", "none", message(0x0001)),
        ("Allocate", "none", message(0x0003, transport)),
        ("Allocate", "wrong", with_integrity(0x0003, transport + auth, bad_key)),
        ("Allocate", "valid", with_integrity(0x0003, transport + auth, good_key)),
        ("ChannelBind", "none", message(0x0009, channel + peer)),
        ("ChannelBind", "wrong", with_integrity(0x0009, channel + peer + auth, bad_key)),
        ("ChannelBind", "valid (no allocation)", with_integrity(0x0009, channel + peer + auth, good_key)),
    ]
    print("| request | credentials | request B | response B | factor | factor with IP+UDP (28 B) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, creds, data in cases:
        resp = udp_exchange(t, data)
        code = ""
        err = attrs_of(resp).get(0x0009) if resp else None
        if err:
            code = f" ({err[2] * 100 + err[3]})"
        print(
            f"| {name} | {creds} | {len(data)} | {len(resp)}{code} | {len(resp) / len(data):.2f} | "
            f"{(len(resp) + 28) / (len(data) + 28):.2f} |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ternd", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "ternd"))
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--non-reading", type=int, default=1000)
    ap.add_argument("--requests-each", type=int, default=12000)
    ap.add_argument("--server-nofile", type=int, default=0, help="the server's fd limit (default: the hard limit)")
    ap.add_argument("--skip-idle", action="store_true", help="only the non-reading clients and amplification")
    args = ap.parse_args()
    raise_fd_limit()
    nofile = args.server_nofile or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if not os.path.exists(args.ternd):
        sys.exit(f"{args.ternd} not found: cargo build --release first, or pass --ternd")
    with tempfile.TemporaryDirectory() as work:

        def fresh():
            return Ternd(args.ternd, work, nofile)

        print(f"ternd {args.ternd}; server fd limit {nofile}; {args.conns} connections per attack; "
              "a fresh server for each row\n")
        print("| attack | sources | opened | held by server after 1 s | server fds | server RSS MiB | honest client | took |")
        print("|---|---|---:|---:|---|---|---|---|")
        attacks = [] if args.skip_idle else [("idle HTTP", lambda t: t.http, False), ("idle TURN/TCP", lambda t: t.tcp, False),
                                   ("idle TURN/TLS (handshake done)", lambda t: t.tls, True)]
        for name, port_of, tls in attacks:
            for many in (False, True):
                t = fresh()
                try:
                    idle_attack(t, name, port_of(t), args.conns, many, tls)
                finally:
                    t.stop()
        print()
        t = fresh()
        try:
            non_reading_attack(t, args.non_reading, args.requests_each)
            print()
            amplification(t)
        finally:
            t.stop()


if __name__ == "__main__":
    main()
