//! The NAT lab (`deploy/lab/ternd-lab`) from tests: a lab with a unique
//! namespace prefix, processes started inside its nodes, closures run inside a
//! node's network namespace (sockets made there stay there), and teardown on
//! Drop. A test killed before Drop runs leaves a lab whose owner pid is dead;
//! the next `ternd-lab up` (every lab test starts one) removes it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The NAT behaviours the lab's routers implement (`ternd-lab up NAME=TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Address-and-port-dependent mapping.
    Symmetric,
    /// No UDP at all; outbound TCP to 443 and 3478 only.
    UdpBlocked,
}

impl Nat {
    pub fn lab_type(self) -> &'static str {
        match self {
            Nat::FullCone => "full",
            Nat::RestrictedCone => "restricted",
            Nat::PortRestrictedCone => "port",
            Nat::Symmetric => "symmetric",
            Nat::UdpBlocked => "udp-blocked",
        }
    }
}

/// One client behind each NAT type that lets UDP through.
pub const UDP_NATS: [(&str, Nat); 4] = [
    ("full", Nat::FullCone),
    ("restricted", Nat::RestrictedCone),
    ("port", Nat::PortRestrictedCone),
    ("symmetric", Nat::Symmetric),
];

/// One client node: its name, NAT, private address and its router's public address.
#[derive(Clone, Debug)]
pub struct Client {
    pub name: String,
    pub nat: Nat,
    pub host: std::net::Ipv4Addr,
    pub public: std::net::Ipv4Addr,
}

pub struct Lab {
    pub prefix: String,
    pub clients: Vec<Client>,
    pub server_nat: bool,
    children: Vec<(String, Child)>,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/lab/ternd-lab")
}

/// True when this process can build labs (root, `ip`, `nft`, `sysctl`). Otherwise prints
/// SKIPPED and returns false, or panics under CI.
pub fn prerequisites() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces and nftables)");
    }
    for (tool, pkg) in [("ip", "iproute2"), ("nft", "nftables"), ("sysctl", "procps")] {
        let found = Command::new(tool).arg("-V").output().is_ok_and(|o| o.status.success());
        if !found {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return true;
    }
    super::missing(&format!("{} (for the NAT lab)", missing.join(", ")));
    false
}

/// The lab script for the lab `prefix` owned by process `owner`, with the
/// state where the tests read it (`/run/ternd-lab`, whatever the caller's
/// TERND_LAB_STATE says) and no stdin.
pub fn script_command(prefix: &str, owner: u32) -> Command {
    let mut c = Command::new(script());
    c.env("TERND_LAB_PREFIX", prefix)
        .env("TERND_LAB_OWNER", owner.to_string())
        .env_remove("TERND_LAB_STATE")
        .stdin(Stdio::null());
    c
}

/// Runs the lab script for `prefix`, owned by this process, to completion.
pub fn run_script(prefix: &str, args: &[&str]) -> std::process::Output {
    script_command(prefix, std::process::id())
        .args(args)
        .output()
        .expect("run deploy/lab/ternd-lab")
}

impl Lab {
    /// Builds a lab with these clients (and ternd behind a 1:1 NAT with
    /// `server_nat`) under a prefix no other lab of any process uses.
    pub fn up(clients: &[(&str, Nat)], server_nat: bool) -> Lab {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("tl{:x}n{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["up".to_string()];
        args.extend(clients.iter().map(|(n, t)| format!("{n}={}", t.lab_type())));
        if server_nat {
            args.push("--server-nat".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_script(&prefix, &args);
        assert!(
            out.status.success(),
            "ternd-lab {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The addresses as the script recorded them: "NAME TYPE HOST PUBLIC" per line.
        let record = format!("/run/ternd-lab/{prefix}/clients");
        let text = std::fs::read_to_string(&record).unwrap_or_else(|e| panic!("read {record}: {e}"));
        let clients = text
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (_, nat) = clients.iter().find(|(n, _)| *n == f[0]).expect("a client we asked for");
                Client {
                    name: f[0].to_string(),
                    nat: *nat,
                    host: f[2].parse().expect("a host address"),
                    public: f[3].parse().expect("a public address"),
                }
            })
            .collect();
        Lab {
            prefix,
            clients,
            server_nat,
            children: Vec::new(),
        }
    }

    pub fn client(&self, name: &str) -> &Client {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .expect("a client of this lab")
    }

    /// The namespace name of a node (`inet`, `srv`, `r-NAME`, `NAME`).
    pub fn netns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// `program` run inside `node` (through `ip netns exec`).
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns(node)]).arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// Starts `cmd` (from [`Lab::command`]) and keeps it until the lab drops,
    /// which ends it by pid. Returns its pid.
    pub fn spawn(&mut self, what: &str, mut cmd: Command) -> u32 {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        let pid = child.id();
        self.children.push((what.to_string(), child));
        pid
    }

    /// Whether the process started as `what` has exited (and how).
    pub fn exited(&mut self, what: &str) -> Option<std::process::ExitStatus> {
        let (_, child) = self.children.iter_mut().find(|(w, _)| w == what)?;
        child.try_wait().ok().flatten()
    }

    /// Runs `f` on a fresh thread inside `node`'s network namespace. Sockets
    /// it creates belong to that namespace and may be returned and used from
    /// any thread.
    pub fn in_node<T: Send + 'static>(&self, node: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        super::netns::in_ns(&self.netns(node), f)
    }

    /// `ternd-lab status` output, for failure messages.
    pub fn status(&self) -> String {
        String::from_utf8_lossy(&self.script(&["status"]).stdout).into_owned()
    }

    /// Runs `deploy/lab/ternd-lab ARGS` on this lab.
    pub fn script(&self, args: &[&str]) -> std::process::Output {
        run_script(&self.prefix, args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                super::process::stop(child);
            }
        }
        let out = run_script(&self.prefix, &["down"]);
        if !out.status.success() {
            eprintln!(
                "ternd-lab down ({}) failed: {}",
                self.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
