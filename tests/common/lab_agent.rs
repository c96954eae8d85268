//! The webrtc-ice agent (`ternd-ice-agent`, crates/ice-agent) and `ternd
//! probe` run inside lab nodes; their JSON lines, exit codes and stderr.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use super::agent_bin::agent_bin;
use super::lab::Lab;
use super::lab_ternd::{PASSWORD, PUBLIC, PUBLIC_ALT, USER};
use super::process;

/// What a process in the lab printed (its JSON lines) and how it exited.
pub struct Finished {
    pub what: String,
    /// None when it ran over its time limit and was stopped.
    pub code: Option<i32>,
    pub events: Vec<Value>,
    /// Lines of stdout that were not JSON.
    pub stray: Vec<String>,
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
        let stderr: Vec<&str> = self.stderr.lines().collect();
        format!(
            "{} exited {:?}\nstdout:\n{}\nstderr (tail):\n{}",
            self.what,
            self.code,
            events.join("\n"),
            stderr[stderr.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// A process started in a lab node, with its description for reports.
pub struct Running {
    what: String,
    running: process::Running,
}

pub fn spawn(lab: &Lab, node: &str, program: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Running {
    Running::new(
        format!("{node}: {}", args.join(" ")),
        lab.command(node, program).args(args),
    )
}

impl Running {
    /// Starts `cmd`; `what` names it in reports.
    pub fn new(what: String, cmd: &mut std::process::Command) -> Running {
        Running {
            what,
            running: process::spawn(cmd),
        }
    }

    /// Waits at most `limit` (then ends it) and collects its JSON lines.
    pub fn finish(self, limit: Duration) -> Finished {
        let f = self.running.finish(limit);
        let (mut events, mut stray) = (Vec::new(), Vec::new());
        for line in f.stdout.lines() {
            match serde_json::from_str(line) {
                Ok(v) => events.push(v),
                Err(_) => stray.push(line.to_string()),
            }
        }
        Finished {
            what: self.what,
            code: f.status.and_then(|s| s.code()),
            events,
            stray,
            stderr: f.stderr,
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

/// The checks of a `probe --json` run (its one document's `checks`).
pub fn probe_checks(f: &Finished) -> Vec<Value> {
    f.events
        .first()
        .and_then(|d| d["checks"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// The nat-mapping verdict of a probe run.
pub fn mapping_verdict(f: &Finished) -> String {
    verdict(f, "nat-mapping")
}

/// The nat-filtering verdict (RFC 5780 §4.4) of a probe run.
pub fn filtering_verdict(f: &Finished) -> String {
    verdict(f, "nat-filtering")
}

fn verdict(f: &Finished, check: &str) -> String {
    probe_checks(f)
        .iter()
        .find(|e| e["check"] == check)
        .and_then(|e| e["verdict"].as_str())
        .map_or_else(|| format!("no {check} check"), str::to_string)
}
