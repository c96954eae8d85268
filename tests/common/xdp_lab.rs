//! Namespaces for the XDP fast-path tests (tests/fastpath.rs): a server
//! between a client and a peer over veth pairs (native XDP), or all three on
//! one namespace's loopback (generic XDP), and the real `ternd` binary run
//! inside, stopped by pid and the namespaces deleted when dropped.
#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use super::netns::in_ns;
use super::turn::{Io, TurnClient};

pub const USER: (&str, &str) = ("alice", "alice-password");
/// The HTTP listener inside the server namespace (metrics).
pub const HTTP: &str = "127.0.0.1:18080";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// client -- veth -- server -- veth -- peer, native XDP on the server's ends.
    Veth,
    /// Everything on one namespace's `lo`, generic XDP.
    Loopback,
}

/// True when this process can make namespaces and attach XDP (root, `ip`,
/// `ethtool`, `clang` for the far ends' XDP_PASS program, `bpftool` to read
/// ternd's maps); otherwise
/// SKIPPED, or a failure under CI.
pub fn prerequisites() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        super::missing("root (network namespaces and XDP)");
        return false;
    }
    let tools = [
        ("ip", "-V", "iproute2"),
        ("ethtool", "--version", "ethtool"),
        ("clang", "--version", "clang"),
        ("bpftool", "version", "bpftool"),
    ];
    for (tool, flag, pkg) in tools {
        if !Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success()) {
            super::missing(pkg);
            return false;
        }
    }
    true
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The addresses of one family in a lab.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub listen: SocketAddr,
    pub client: IpAddr,
    pub peer: IpAddr,
    pub relay: IpAddr,
}

pub struct Lab {
    pub topology: Topology,
    pub server: String,
    pub client: String,
    pub peer: String,
    pub v4: Addrs,
    pub v6: Addrs,
    /// Interfaces ternd attaches to, in the server namespace.
    pub interfaces: Vec<String>,
    namespaces: Vec<String>,
    pub dir: PathBuf,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

impl Lab {
    pub fn new(topology: Topology) -> Lab {
        let prefix = format!("xdp{}-{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("ternd-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ns = |n: &str| format!("{prefix}-{n}");
        let mut lab = Lab {
            topology,
            server: ns("s"),
            client: ns("c"),
            peer: ns("p"),
            v4: Addrs {
                listen: "10.0.1.1:3478".parse().unwrap(),
                client: ip("10.0.1.2"),
                peer: ip("10.0.2.2"),
                relay: ip("10.0.2.1"),
            },
            v6: Addrs {
                listen: "[fd00:1::1]:3478".parse().unwrap(),
                client: ip("fd00:1::2"),
                peer: ip("fd00:2::2"),
                relay: ip("fd00:2::1"),
            },
            interfaces: vec!["s0".into(), "s1".into()],
            namespaces: Vec::new(),
            dir,
        };
        let x = |ns: &str, cmd: &str| {
            let mut args = vec!["ip", "netns", "exec", ns];
            args.extend(cmd.split_whitespace());
            run(&args);
        };
        let server = lab.server.clone();
        lab.add_ns(&server);
        x(&server, "ip link set lo up");
        // bpf_fib_lookup answers only where forwarding is on.
        x(
            &server,
            "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
        );
        match topology {
            Topology::Loopback => {
                lab.client = server.clone();
                lab.peer = server.clone();
                lab.v4 = Addrs {
                    listen: "127.0.0.1:3478".parse().unwrap(),
                    client: ip("127.0.0.5"),
                    peer: ip("127.0.0.2"),
                    relay: ip("127.0.0.1"),
                };
                // ::1 is the relay address; client and peer need others
                // (a peer on our own relay address stays in userspace).
                x(&server, "ip -6 addr add fd00:9::5/128 dev lo nodad");
                x(&server, "ip -6 addr add fd00:9::2/128 dev lo nodad");
                lab.v6 = Addrs {
                    listen: "[::1]:3478".parse().unwrap(),
                    client: ip("fd00:9::5"),
                    peer: ip("fd00:9::2"),
                    relay: ip("::1"),
                };
                lab.interfaces = vec!["lo".into()];
            }
            Topology::Veth => {
                let (client, peer) = (lab.client.clone(), lab.peer.clone());
                lab.add_ns(&client);
                lab.add_ns(&peer);
                for (other, mine, theirs, n) in [(&client, "s0", "c0", 1), (&peer, "s1", "p0", 2)] {
                    run(&[
                        "ip", "-n", &server, "link", "add", mine, "type", "veth", "peer", "name", theirs, "netns",
                        other,
                    ]);
                    x(&server, &format!("ip addr add 10.0.{n}.1/24 dev {mine}"));
                    x(&server, &format!("ip -6 addr add fd00:{n}::1/64 dev {mine} nodad"));
                    x(&server, &format!("ip link set {mine} up"));
                    x(other, "ip link set lo up");
                    x(other, &format!("ip addr add 10.0.{n}.2/24 dev {theirs}"));
                    x(other, &format!("ip -6 addr add fd00:{n}::2/64 dev {theirs} nodad"));
                    x(other, &format!("ip link set {theirs} up"));
                    x(other, &format!("ip route add default via 10.0.{n}.1"));
                    x(other, &format!("ip -6 route add default via fd00:{n}::1"));
                    // Full checksums from the senders (a veth otherwise
                    // leaves them to an offload that XDP never does), and
                    // an XDP program on the far end, without which a veth
                    // drops the frames the server sends with XDP_TX.
                    x(other, &format!("ethtool -K {theirs} tx off"));
                    let pass = lab.pass_program();
                    x(
                        other,
                        &format!("ip link set dev {theirs} xdp obj {} sec xdp", pass.display()),
                    );
                }
            }
        }
        lab
    }

    /// A trivial XDP_PASS program, compiled with clang into the lab's directory.
    fn pass_program(&self) -> PathBuf {
        let obj = self.dir.join("pass.o");
        if !obj.exists() {
            let src = self.dir.join("pass.c");
            std::fs::write(
                &src,
                "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
                 SEC(\"xdp\") int pass(struct xdp_md *ctx) { return XDP_PASS; }\n\
                 char LICENSE[] SEC(\"license\") = \"GPL\";\n",
            )
            .unwrap();
            let (src, out) = (src.display().to_string(), obj.display().to_string());
            run(&[
                "clang",
                "-O2",
                "-target",
                "bpf",
                "-I/usr/include/x86_64-linux-gnu",
                "-c",
                &src,
                "-o",
                &out,
            ]);
        }
        obj
    }

    fn add_ns(&mut self, name: &str) {
        run(&["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
    }

    pub fn addrs(&self, v6: bool) -> Addrs {
        if v6 {
            self.v6
        } else {
            self.v4
        }
    }

    /// A TURN client on the client host, talking to the listener of the family.
    pub fn client(&self, v6: bool) -> TurnClient {
        self.client_as(v6, USER.0, USER.1)
    }

    /// [`Lab::client`] with other credentials.
    pub fn client_as(&self, v6: bool, user: &str, password: &str) -> TurnClient {
        let a = self.addrs(v6);
        let io = in_ns(&self.client, move || Io::udp_from(a.client, a.listen));
        TurnClient::new(io, user, password)
    }

    /// [`Lab::client`] with an allocation of the family (RFC 6156: IPv4
    /// unless asked); returns the relayed address.
    pub fn allocate(&self, c: &mut TurnClient, v6: bool) -> SocketAddr {
        let family = if v6 { 2 } else { 1 };
        c.allocate_with(&|m| m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[family, 0, 0, 0]))
            .expect("allocate")
    }

    /// A UDP socket on the peer host.
    pub fn peer_socket(&self, v6: bool) -> UdpSocket {
        let a = self.addrs(v6);
        in_ns(&self.peer, move || {
            let s = UdpSocket::bind((a.peer, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s
        })
    }

    /// The config ternd runs with: `mode` on the lab's interfaces, plus `extra` TOML lines.
    pub fn config(&self, mode: &str, extra: &str) -> String {
        let peers = match self.topology {
            Topology::Veth => r#"["10.0.0.0/8", "fd00::/8"]"#,
            Topology::Loopback => r#"["127.0.0.0/8", "fd00::/8"]"#,
        };
        let interfaces: Vec<String> = self.interfaces.iter().map(|i| format!("\"{i}\"")).collect();
        format!(
            r#"[listen]
udp = ["{}", "{}"]
tcp = []
[server]
shards = 2
[relay]
ipv4 = "{}"
ipv6 = "{}"
[peers]
allow = {peers}
[turn]
users = {{ {} = "{}" }}
{extra}
[http]
listen = ["{HTTP}"]
[fastpath]
mode = "{mode}"
interfaces = [{}]
[log]
level = "info"
"#,
            self.v4.listen,
            self.v6.listen,
            self.v4.relay,
            self.v6.relay,
            USER.0,
            USER.1,
            interfaces.join(", ")
        )
    }

    /// The XDP programs attached in the server namespace, as `ip link` shows them.
    pub fn attached(&self) -> usize {
        let out = Command::new("ip")
            .args(["-n", &self.server, "-d", "link", "show"])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).matches("prog/xdp").count()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One admin request to the ternd of server namespace `ns` (from inside
/// it: admin answers local callers only), as JSON.
pub fn admin(ns: &str, method: &'static str, path: String) -> serde_json::Value {
    in_ns(ns, move || {
        let headers: &[(&str, &str)] = &[("X-Ternd-Admin", "1")];
        super::http::http(HTTP.parse().unwrap(), method, &path, headers).json()
    })
}

/// The real ternd binary inside a lab's server namespace.
pub struct Ternd {
    pub child: Child,
    pub log: PathBuf,
    pub config: PathBuf,
    server_ns: String,
}

impl Ternd {
    /// Starts ternd with `config`; Err(log) if it exits instead of starting.
    pub fn start(lab: &Lab, config: &str) -> Result<Ternd, String> {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let path = lab.dir.join(format!("ternd-{n}.toml"));
        let log = lab.dir.join(format!("ternd-{n}.log"));
        std::fs::write(&path, config).unwrap();
        let out = File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.server,
                env!("CARGO_BIN_EXE_ternd"),
                "serve",
                "--config",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start ternd");
        let mut t = Ternd {
            child,
            log,
            config: path,
            server_ns: lab.server.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if t.log_text().contains("ternd started") {
                return Ok(t);
            }
            if t.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                return Err(t.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One sample of /metrics.
    pub fn metric(&self, series: &str) -> u64 {
        let series = series.to_string();
        in_ns(&self.server_ns, move || {
            super::http::metric(HTTP.parse().unwrap(), &series)
        })
    }

    /// One admin request, as JSON (see [`admin`]).
    pub fn admin(&self, method: &'static str, path: String) -> serde_json::Value {
        admin(&self.server_ns, method, path)
    }

    /// The channels this ternd has in its kernel map (`to_peer`), as
    /// bpftool sees them: the core's timer and commands, not the kernel's
    /// own deadline, decide what is there.
    pub fn kernel_channels(&self) -> usize {
        let bpftool = |args: &[&str]| -> serde_json::Value {
            let out = Command::new("bpftool")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("bpftool {args:?}: {e}"));
            assert!(
                out.status.success(),
                "bpftool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("bpftool -j prints JSON")
        };
        // The ids of the maps this process holds, from its descriptors' fdinfo.
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("ternd's fdinfo");
        let held: Vec<u64> = fds
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter_map(|info| {
                let line = info.lines().find(|l| l.starts_with("map_id:"))?;
                line["map_id:".len()..].trim().parse().ok()
            })
            .collect();
        let maps = bpftool(&["-j", "map", "show"]);
        let id = maps
            .as_array()
            .expect("a list of maps")
            .iter()
            .find(|m| m["name"] == "to_peer" && m["id"].as_u64().is_some_and(|id| held.contains(&id)))
            .unwrap_or_else(|| panic!("no to_peer map among ternd's {held:?} in {maps}"))["id"]
            .to_string();
        let entries = bpftool(&["-j", "map", "dump", "id", &id]);
        entries.as_array().expect("a list of entries").len()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to the child we spawned, by pid (`ip netns exec` execs ternd).
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ternd did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ternd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
