//! Certificates renewed without a signal (certbot, cert-manager, ACME
//! clients that only replace files): a thread looks at the certificate and
//! key files every `tls.watch_interval` and, when one changed (device,
//! inode, size or modification time), loads both again with the same checks
//! as a SIGHUP reload. A broken pair (half-written, mismatched, not PEM) is
//! refused and logged and the running certificate stays; the next change
//! is tried again. Polling metadata costs two stat calls per interval and
//! needs no inotify dependency, and it sees a file replaced by a rename or
//! a symlink swap (`/etc/letsencrypt/live/...`) as well as one rewritten.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::server::ServerHandle;
use crate::tls::CertResolver;

/// How often the interval is looked at again while watching is off (0).
const OFF_RECHECK: Duration = Duration::from_secs(1);

/// What identifies one version of a file (None: it cannot be read now).
type Stamp = Option<(u64, u64, u64, i64, i64)>;

/// The versions of the certificate and key files.
pub type Stamps = (Stamp, Stamp);

/// Stamps the pair; taken before the files are first loaded, so a change
/// made while the server starts is seen as one.
pub fn stamps(cert_file: &Path, key_file: &Path) -> Stamps {
    (stamp(cert_file), stamp(key_file))
}

fn stamp(path: &Path) -> Stamp {
    // metadata() follows symlinks: a swapped link shows as another inode.
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The watching thread; stopped and joined when dropped.
pub struct CertWatch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for CertWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts watching the files the running config names (a reload may name
/// others; they are followed), from the versions `seen` when they were loaded.
pub fn start(handle: ServerHandle, resolver: Arc<CertResolver>, mut seen: Stamps) -> std::io::Result<CertWatch> {
    let (stop, stopped) = mpsc::channel::<()>();
    let files = |h: &ServerHandle| {
        let c = h.config();
        (c.tls.cert_file, c.tls.key_file, c.tls.watch_interval.0)
    };
    let thread = std::thread::Builder::new()
        .name("ternd-certwatch".into())
        .spawn(move || loop {
            let (cert, key, every) = files(&handle);
            let wait = if every.is_zero() { OFF_RECHECK } else { every };
            match stopped.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if every.is_zero() {
                continue;
            }
            let now = stamps(&cert, &key);
            if now == seen {
                continue;
            }
            seen = now;
            match resolver
                .reload(&cert, &key)
                .and_then(|()| handle.reload_dtls(&cert, &key))
            {
                Ok(()) => tracing::info!(
                    cert_file = %cert.display(),
                    "TLS certificate reloaded: its files changed"
                ),
                Err(e) => tracing::error!(
                    "TLS certificate files changed but were refused, the running certificate stays: {e:#}"
                ),
            }
        })?;
    Ok(CertWatch {
        stop: Some(stop),
        thread: Some(thread),
    })
}
