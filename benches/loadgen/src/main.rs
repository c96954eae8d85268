//! ternd-loadgen: load generator for benches/run.sh.
//!
//! Subcommands (every loop is bounded in time):
//!   binding   --server ADDR [--duration SECS] [--warmup SECS] [--sockets N] [--window W]
//!             [--batch B] [--timeout-ms MS] [--progress true] [--server-pid PID]
//!             STUN Binding requests over UDP; prints one line
//!             `answered_per_sec=.. sent=.. received=.. ...`
//!   seed      --server ADDR [--sockets 16] [--window 4] [--hold SECS]
//!             send WINDOW Binding requests per socket once, then count the
//!             answers that come back within SECS (the in-kernel reflector's seeder);
//!             prints `seeded=.. drained=.. bad=..`
//!   probe     --server ADDR [--timeout SECS]
//!             exit 0 as soon as ADDR answers a Binding request, 1 after SECS
//!   reflect   --listen ADDR [--duration SECS]
//!             trivial batched Binding responder (the "bare ceiling" server)
//!   relay     --server ADDR|none [--allocations 1] [--payload 100] [--inflight 256] [--rate 0] ...
//!             TURN relay throughput: ChannelData echoed through the server by a
//!             UDP echo peer of this process; prints `echoed_per_sec=.. mbit_per_sec=.. ...`
//!             (`--server none`: clients talk to the echo peer directly, the bare ceiling)
//!   alloc     --server ADDR [--clients 16] [--pool 0 (0: new socket per cycle)] [--duration 5] [--warmup 1]
//!             Allocate + Refresh(LIFETIME=0) cycles per second; prints `allocs_per_sec=.. ...`
//!   hold      --server ADDR [--allocations 10000] [--hold 60]
//!             create idle allocations, print `ready allocations=N ...`, keep them for SECS
//!   free-port print a UDP port on 127.0.0.1 that is currently free (UDP and TCP)

mod alloc;
mod binding;
mod net;
mod reflect;
mod relay;
mod seed;
mod stun;
mod turn;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::exit;
use std::str::FromStr;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ternd-loadgen <binding|seed|relay|alloc|hold|probe|reflect|free-port> [--key value ...]
  binding   --server ADDR [--duration 5] [--warmup 1] [--sockets 8] [--window 64] [--batch 32] [--gso true] [--timeout-ms 200]
            [--rate 0 (requests/s, 0 = window only)] [--progress true] [--server-pid PID]
  seed      --server ADDR [--sockets 16] [--window 4] [--hold 10]  (send once, count what comes back: the XDP reflector's seeder)
  relay     --server ADDR|none [--allocations 1] [--payload 100] [--inflight 256] [--rate 0 (msgs/s, 0 = window only)]
            [--duration 5] [--warmup 1] [--batch 32] [--timeout-ms 200] [--peers 4] [--parallel 64] [--setup-timeout 60]
            [--user bench] [--password benchpass] [--progress true] [--server-pid PID]
            [--peer-ip 127.0.0.2] [--peer-netns NAME (echo peers in that namespace, e.g. the veth lab's peer)]
  alloc     --server ADDR [--clients 16] [--pool 0 (0: new socket per cycle)] [--duration 5] [--warmup 1] [--rto-ms 500] [--user bench] [--password benchpass] [--server-pid PID]
  hold      --server ADDR [--allocations 10000] [--parallel 64] [--setup-timeout 120] [--hold 60] [--user bench] [--password benchpass]
  probe     --server ADDR [--timeout 5]
  reflect   --listen ADDR [--duration 3600]
  free-port";

/// `--key value` options of one subcommand.
struct Opts {
    map: HashMap<String, String>,
}

impl Opts {
    fn parse(args: &[String], allowed: &[&str]) -> Opts {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").unwrap_or_else(|| die(&format!("unexpected argument {k:?}")));
            let (key, val) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it.next().unwrap_or_else(|| die(&format!("--{key} needs a value")));
                    (key.to_string(), v.clone())
                }
            };
            if !allowed.contains(&key.as_str()) {
                die(&format!("unknown option --{key}"));
            }
            map.insert(key, val);
        }
        Opts { map }
    }

    fn get<T: FromStr>(&self, key: &str, default: Option<T>) -> T {
        match self.map.get(key) {
            Some(v) => v.parse().unwrap_or_else(|_| die(&format!("bad value for --{key}: {v:?}"))),
            None => default.unwrap_or_else(|| die(&format!("--{key} is required"))),
        }
    }

    fn secs(&self, key: &str, default: f64) -> Duration {
        let s: f64 = self.get(key, Some(default));
        if !(0.0..1e6).contains(&s) {
            die(&format!("bad value for --{key}"));
        }
        Duration::from_secs_f64(s)
    }
}

fn die(msg: &str) -> ! {
    eprintln!("ternd-loadgen: {msg}\n{USAGE}");
    exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { die("missing subcommand") };
    let rest = &args[1..];
    match cmd.as_str() {
        "binding" => {
            let o = Opts::parse(rest, &["server", "duration", "warmup", "sockets", "window", "batch", "gso", "timeout-ms", "rate", "progress", "server-pid"]);
            let cfg = binding::Config {
                server: o.get("server", None),
                duration: o.secs("duration", 5.0),
                warmup: o.secs("warmup", 1.0),
                sockets: o.get("sockets", Some(8usize)).max(1),
                window: o.get("window", Some(64usize)).clamp(1, 1 << 20),
                batch: o.get("batch", Some(32usize)).clamp(1, 1024),
                gso: o.get("gso", Some(true)),
                timeout: Duration::from_millis(o.get("timeout-ms", Some(200u64)).max(1)),
                rate: o.get("rate", Some(0.0f64)).max(0.0),
                progress: o.get("progress", Some(false)),
                server_pid: o.map.contains_key("server-pid").then(|| o.get("server-pid", None)),
            };
            match binding::run(&cfg) {
                Ok(r) => println!("{r}"),
                Err(e) => {
                    eprintln!("ternd-loadgen binding: {e}");
                    exit(1)
                }
            }
        }
        "relay" => {
            let o = Opts::parse(
                rest,
                &[
                    "server", "allocations", "payload", "inflight", "rate", "duration", "warmup", "batch", "timeout-ms", "peers",
                    "parallel", "setup-timeout", "user", "password", "progress", "server-pid", "peer-ip", "peer-netns",
                ],
            );
            let server: String = o.get("server", None);
            let payload: usize = o.get("payload", Some(100usize));
            if !(relay::MIN_PAYLOAD..=1400).contains(&payload) {
                die("--payload must be 12..=1400");
            }
            let cfg = relay::Config {
                server: if server == "none" {
                    None
                } else {
                    Some(server.parse().unwrap_or_else(|_| die("bad value for --server")))
                },
                allocations: o.get("allocations", Some(1usize)).clamp(1, 100_000),
                payload,
                inflight: o.get("inflight", Some(256usize)).clamp(1, 1 << 20),
                rate: o.get("rate", Some(0.0f64)).max(0.0),
                batch: o.get("batch", Some(32usize)).clamp(1, 1024),
                duration: o.secs("duration", 5.0),
                warmup: o.secs("warmup", 1.0),
                timeout: Duration::from_millis(o.get("timeout-ms", Some(200u64)).max(1)),
                peers: o.get("peers", Some(4usize)).clamp(1, 64),
                peer_ip: o.get("peer-ip", Some(net::PEER_HOST)),
                peer_netns: o.map.get("peer-netns").cloned(),
                user: o.get("user", Some("bench".to_string())),
                password: o.get("password", Some("benchpass".to_string())),
                parallel: o.get("parallel", Some(64usize)).max(1),
                setup_timeout: o.secs("setup-timeout", 60.0),
                server_pid: o.map.contains_key("server-pid").then(|| o.get("server-pid", None)),
                progress: o.get("progress", Some(false)),
            };
            match relay::run(&cfg) {
                Ok(r) => println!("{r}"),
                Err(e) => {
                    eprintln!("ternd-loadgen relay: {e}");
                    exit(1)
                }
            }
        }
        "alloc" => {
            let o = Opts::parse(rest, &["server", "clients", "pool", "duration", "warmup", "rto-ms", "user", "password", "server-pid"]);
            let cfg = alloc::Config {
                server: o.get("server", None),
                clients: o.get("clients", Some(16usize)).clamp(1, 10_000),
                pool: o.get("pool", Some(0usize)).min(4096),
                duration: o.secs("duration", 5.0),
                warmup: o.secs("warmup", 1.0),
                rto: Duration::from_millis(o.get("rto-ms", Some(500u64)).max(1)),
                user: o.get("user", Some("bench".to_string())),
                password: o.get("password", Some("benchpass".to_string())),
                server_pid: o.map.contains_key("server-pid").then(|| o.get("server-pid", None)),
            };
            match alloc::run(&cfg) {
                Ok(r) => println!("{r}"),
                Err(e) => {
                    eprintln!("ternd-loadgen alloc: {e}");
                    exit(1)
                }
            }
        }
        "hold" => {
            let o = Opts::parse(rest, &["server", "allocations", "parallel", "setup-timeout", "hold", "user", "password"]);
            let cfg = alloc::HoldConfig {
                server: o.get("server", None),
                allocations: o.get("allocations", Some(10_000usize)).clamp(1, 100_000),
                parallel: o.get("parallel", Some(64usize)).max(1),
                setup_timeout: o.secs("setup-timeout", 120.0),
                hold: o.secs("hold", 60.0),
                user: o.get("user", Some("bench".to_string())),
                password: o.get("password", Some("benchpass".to_string())),
            };
            if let Err(e) = alloc::hold(&cfg) {
                eprintln!("ternd-loadgen hold: {e}");
                exit(1)
            }
        }
        "seed" => {
            let o = Opts::parse(rest, &["server", "sockets", "window", "hold"]);
            let cfg = seed::Config {
                server: o.get("server", None),
                sockets: o.get("sockets", Some(16usize)).clamp(1, 4096),
                window: o.get("window", Some(4usize)).clamp(1, 4096),
                hold: o.secs("hold", 10.0),
            };
            match seed::run(&cfg) {
                Ok(r) => println!("{r}"),
                Err(e) => {
                    eprintln!("ternd-loadgen seed: {e}");
                    exit(1)
                }
            }
        }
        "probe" => {
            let o = Opts::parse(rest, &["server", "timeout"]);
            let server: SocketAddrV4 = o.get("server", None);
            let ok = probe(server, o.secs("timeout", 5.0)).unwrap_or(false);
            exit(if ok { 0 } else { 1 })
        }
        "reflect" => {
            let o = Opts::parse(rest, &["listen", "duration"]);
            if let Err(e) = reflect::run(o.get("listen", None), o.secs("duration", 3600.0)) {
                eprintln!("ternd-loadgen reflect: {e}");
                exit(1)
            }
        }
        "free-port" => {
            Opts::parse(rest, &[]);
            for _ in 0..100 {
                let Ok(u) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)) else { continue };
                let Ok(port) = u.local_addr().map(|a| a.port()) else { continue };
                if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
                    println!("{port}");
                    return;
                }
            }
            eprintln!("ternd-loadgen: no free port found");
            exit(1)
        }
        "-h" | "--help" | "help" => println!("{USAGE}"),
        other => die(&format!("unknown subcommand {other:?}")),
    }
}

/// Send a Binding request every 100 ms until a success response arrives or
/// `timeout` passes.
fn probe(server: SocketAddrV4, timeout: Duration) -> std::io::Result<bool> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect(server)?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let len = stun::write_binding_request(&mut buf, 0x7072_6f62, n);
        let _ = s.send(&buf[..len]);
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            match s.recv(&mut buf) {
                Ok(len) => {
                    if stun::parse_header(&buf[..len], stun::BINDING_SUCCESS).is_some() {
                        return Ok(true);
                    }
                }
                Err(_) => {
                    // Timeout, or ICMP unreachable (server not up yet): back off a little.
                    std::thread::sleep(Duration::from_millis(20));
                    break;
                }
            }
        }
    }
    Ok(false)
}
