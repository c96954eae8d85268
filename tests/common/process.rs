//! Child processes in tests: both pipes read on threads and handed over a
//! channel (so a stray holder of a pipe can never block the test), a time
//! limit, and an end by pid (SIGTERM, then SIGKILL).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Running {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

/// What a child printed; `status` is None when it ran over its limit and was stopped.
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Starts `cmd` with stdin closed and both outputs captured.
pub fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = reader(Box::new(child.stderr.take().expect("stderr is piped")));
    Running { child, out, err }
}

impl Running {
    /// Waits up to `limit` for the exit, stopping the child after that.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break Some(status);
            }
            if start.elapsed() > limit {
                stop(&mut self.child);
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Finished {
            status,
            stdout: self.out.recv_timeout(Duration::from_secs(5)).unwrap_or_default(),
            stderr: self.err.recv_timeout(Duration::from_secs(5)).unwrap_or_default(),
        }
    }
}

/// Runs `cmd` to its end, stopped after `limit` (then the status is that of
/// a SIGKILL, which no test expects), and returns what it printed.
pub fn output(cmd: &mut Command, limit: Duration) -> Output {
    let f = spawn(cmd).finish(limit);
    Output {
        status: f.status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL)),
        stdout: f.stdout.into_bytes(),
        stderr: f.stderr.into_bytes(),
    }
}

/// Ends `child` by its pid: SIGTERM (so it can close what it started), then
/// SIGKILL after 3 s.
pub fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
