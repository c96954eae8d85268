//! The real `ternd` binary as a child process: started with its stdout
//! piped, the bound addresses read from its banner, stopped by PID when
//! dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ternd {
    pub child: Child,
    pub udp: SocketAddr,
    /// The first TURN-over-TCP address, if it listens on TCP.
    pub tcp: Option<SocketAddr>,
    pub http: SocketAddr,
    /// The banner as printed, up to and including the "Ctrl-C" line.
    pub banner: String,
}

impl Drop for Ternd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (a `ternd` command line) and reads its banner, up to the
/// "Ctrl-C" line, for the UDP, TCP and iceServers URLs.
pub fn spawn(cmd: &mut Command) -> Ternd {
    spawn_logging(cmd, Stdio::null())
}

/// [`spawn`] with its log (stderr) going to `log`.
pub fn spawn_logging(cmd: &mut Command, log: impl Into<Stdio>) -> Ternd {
    cmd.stdout(Stdio::piped()).stderr(log);
    let mut child = cmd.spawn().expect("ternd starts");
    let (mut udp, mut tcp, mut http) = (None, None, None);
    let mut banner = String::new();
    let addr = |rest: &str| rest.split('?').next().and_then(|hp| hp.parse::<SocketAddr>().ok());
    for line in BufReader::new(child.stdout.take().expect("stdout is piped"))
        .lines()
        .take(100)
    {
        let Ok(line) = line else { break };
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("turn:") {
            if rest.contains("transport=udp") {
                udp = udp.or(addr(rest));
            } else if rest.contains("transport=tcp") {
                tcp = tcp.or(addr(rest));
            }
        }
        if let Some(rest) = line.strip_prefix("iceServers for RTCPeerConnection: http://") {
            http = rest.trim_end_matches("/api/ice-servers").parse().ok();
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    Ternd {
        child,
        udp: udp.expect("a turn: UDP URL in the banner"),
        tcp,
        http: http.expect("the iceServers URL in the banner"),
        banner,
    }
}

impl Ternd {
    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to the child we spawned, by PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "ternd did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Open file descriptors of the process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}
