//! Running test code inside a network namespace (NAT lab, XDP lab).
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

/// Runs `f` on a fresh thread inside network namespace `ns` (a name under
/// /run/netns). Sockets it creates belong to that namespace and may be
/// returned and used from any thread.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) on an open namespace fd; it changes only this
        // thread, which ends when `f` returns.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
