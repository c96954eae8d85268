//! The systemd notify protocol (sd_notify(3)) without libsystemd: datagrams
//! to $NOTIFY_SOCKET (a path, or '@' for the abstract namespace).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    target: Option<std::os::unix::net::SocketAddr>,
    socket: Option<UnixDatagram>,
}

impl Notifier {
    /// From $NOTIFY_SOCKET; a no-op when it is not set (not under systemd).
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|p| {
            if let Some(name) = p.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&p).ok()
            }
        });
        let socket = target.as_ref().and_then(|_| UnixDatagram::unbound().ok());
        Notifier { target, socket }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one state update ("READY=1", "STOPPING=1", ...); errors are
    /// logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let (Some(s), Some(t)) = (&self.socket, &self.target) {
            if let Err(e) = s.send_to_addr(state.as_bytes(), t) {
                tracing::warn!("systemd notify failed: {e}");
            }
        }
    }

    /// RELOADING=1 with the monotonic timestamp systemd (>= 253) asks for.
    pub fn reloading(&self) {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// The watchdog interval systemd expects pings within (WatchdogSec=),
    /// when it is meant for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }
}
