//! The webrtc-ice agent (`ternd-ice-agent`, crates/ice-agent) and `ternd
//! probe` run inside lab nodes; their JSON lines, exit codes and stderr.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::lab::{stop_child, Lab};
use super::lab_ternd::{PASSWORD, PUBLIC, PUBLIC_ALT, USER};

/// The agent binary. It belongs to another package, so cargo gives tests no
/// `CARGO_BIN_EXE_` for it; it sits next to ternd in the same target
/// directory once built (tests/run.sh builds it before the tests; otherwise
/// it is built here on first use).
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let ternd = PathBuf::from(env!("CARGO_BIN_EXE_ternd"));
        let profile_dir = ternd.parent().expect("target/<profile>");
        let bin = profile_dir.join("ternd-ice-agent");
        if bin.exists() {
            return bin;
        }
        let target_dir = profile_dir.parent().expect("the target directory");
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo
            .args(["build", "-p", "ternd-ice-agent", "--bin", "ternd-ice-agent"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build -p ternd-ice-agent");
        assert!(
            status.success() && bin.exists(),
            "cargo build -p ternd-ice-agent failed ({status})"
        );
        bin
    })
    .clone()
}

/// A process running in a lab node with both pipes read on threads.
pub struct Running {
    what: String,
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

/// What a process printed (its JSON lines) and how it exited.
pub struct Finished {
    pub what: String,
    pub code: Option<i32>,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Finished {
    pub fn all(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    pub fn one(&self, event: &str) -> &Value {
        let all = self.all(event);
        assert_eq!(all.len(), 1, "one {event:?} event: {}", self.report());
        all[0]
    }

    pub fn report(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!(
            "{} exited {:?}\nstdout:\n{}\nstderr (tail):\n{}",
            self.what,
            self.code,
            events.join("\n"),
            tail(&self.stderr, 40)
        )
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn spawn(lab: &Lab, node: &str, program: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Running {
    let mut cmd = lab.command(node, program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start a process in the lab");
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    Running {
        what: format!("{node}: {}", args.join(" ")),
        child,
        out,
        err,
    }
}

impl Running {
    /// Waits at most `limit` (then ends it) and collects its output.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let start = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.code();
            }
            if start.elapsed() > limit {
                stop_child(&mut self.child, Duration::from_secs(2));
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.out.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        let stderr = self.err.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        Finished {
            what: self.what,
            code,
            events: out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
            stderr,
        }
    }
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The lab's STUN URL and its TURN/UDP URL with the lab's static user.
pub fn ice_args(turn: bool) -> Vec<String> {
    let mut args = strings(&["--url", &format!("stun:{PUBLIC}:3478")]);
    if turn {
        args.extend(strings(&[
            "--url",
            &format!("turn:{PUBLIC}:3478?transport=udp"),
            "--username",
            USER,
            "--credential",
            PASSWORD,
        ]));
    }
    args
}

/// `ternd-ice-agent gather` inside `node`.
pub fn gather(lab: &Lab, node: &str) -> Finished {
    let mut args = strings(&["gather", "--timeout", "10s"]);
    args.extend(ice_args(true));
    spawn(lab, node, agent_bin(), &args).finish(Duration::from_secs(20))
}

/// Two agents in `a` and `b` meet in `room` on ternd's signaling endpoint and
/// exchange 20 messages each way within `timeout` (e.g. "15s"); a joins first.
pub fn connect_pair(lab: &Lab, a: &str, b: &str, room: &str, turn: bool, timeout: &str) -> (Finished, Finished) {
    let mut args = strings(&[
        "connect",
        "--signal",
        &format!("ws://{PUBLIC}:8080/ws"),
        "--room",
        room,
        "--timeout",
        timeout,
        "--messages",
        "20",
        "--log",
        "info",
    ]);
    args.extend(ice_args(turn));
    let first = spawn(lab, a, agent_bin(), &args);
    std::thread::sleep(Duration::from_millis(300));
    let second = spawn(lab, b, agent_bin(), &args);
    (
        first.finish(Duration::from_secs(25)),
        second.finish(Duration::from_secs(25)),
    )
}

/// `ternd probe --json` inside `node` against the lab's ternd, with the
/// second address and port for the NAT mapping verdict.
pub fn probe(lab: &Lab, node: &str) -> Finished {
    let args = strings(&[
        "probe",
        "--json",
        "--timeout",
        "2s",
        "--alt-server",
        &format!("{PUBLIC_ALT}:3478"),
        "--alt-port",
        "3479",
        "--user",
        USER,
        "--password",
        PASSWORD,
        &format!("stun:{PUBLIC}:3478"),
        &format!("turn:{PUBLIC}:3478?transport=udp"),
    ]);
    spawn(lab, node, env!("CARGO_BIN_EXE_ternd"), &args).finish(Duration::from_secs(20))
}

/// The nat-mapping verdict of a probe run.
pub fn mapping_verdict(f: &Finished) -> String {
    f.events
        .iter()
        .find(|e| e["check"] == "nat-mapping")
        .and_then(|e| e["verdict"].as_str())
        .unwrap_or("no nat-mapping check")
        .to_string()
}
