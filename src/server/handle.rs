//! A cloneable handle on the running shards, for the signal loop and the
//! HTTP endpoints: reload, drain, health, metrics and the admin view, all by
//! message to the shards (nothing on the packet path is shared).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::event_loop::{AllocationInfo, Control, ShardSnapshot};
use super::setup::{quota_limits, Shared};
use crate::budget::{ConnLimiter, Exhaustions, SharedBytes};
use crate::config::{Config, FastpathMode, ReloadPlan, Secret};
use crate::fastpath::{FastPath, Stat};
use crate::tls::CertResolver;
use proto::auth::revocation_lapsed;

pub struct Inner {
    pub controls: Vec<mpsc::UnboundedSender<Control>>,
    pub draining: AtomicBool,
    /// Shard threads still running.
    pub shards_alive: AtomicUsize,
    pub stream_conns: Arc<ConnLimiter>,
    /// Bytes queued towards TCP/TLS clients, all shards.
    pub stream_queued: Arc<SharedBytes>,
    /// Open DTLS sessions, all shards.
    pub dtls_sessions: Arc<ConnLimiter>,
    /// The DTLS context, reloaded with the TLS certificate.
    pub dtls: Option<Arc<crate::dtls::DtlsSetup>>,
    /// Refusals by every budget of this server, for /metrics.
    pub exhaustions: Arc<Exhaustions>,
    pub shared: RwLock<Shared>,
    pub config: Mutex<Config>,
    pub cert: Option<Arc<CertResolver>>,
    /// Usernames revoked by an operator, kept across reloads; see
    /// [`prune_revoked`] for what leaves it.
    pub revoked: Mutex<HashSet<String>>,
    /// Changes the log level (set once logging is installed).
    pub log: Mutex<Option<crate::logging::LogHandle>>,
    /// The kernel fast path while attached; dropping it detaches.
    pub fastpath: Mutex<Option<FastPath>>,
}

/// The kernel fast path's own counters, all CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastpathCounters {
    pub bindings: u64,
    pub to_peer: u64,
    pub to_client: u64,
    pub passed: u64,
}

#[derive(Clone)]
pub struct ServerHandle(pub Arc<Inner>);

/// What a reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Changed keys that only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

impl ServerHandle {
    /// The configuration in force: the last one reloaded, with the keys that
    /// only change on restart as they were at start.
    pub fn config(&self) -> Config {
        self.0.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn shard_count(&self) -> usize {
        self.0.controls.len()
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Ready: every shard running and not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.0.shards_alive.load(Ordering::Relaxed) == self.shard_count()
    }

    pub fn exhaustions(&self) -> &Exhaustions {
        &self.0.exhaustions
    }

    pub fn open_connections(&self) -> usize {
        self.0.stream_conns.open()
    }

    /// Open DTLS sessions (handshaking or established).
    pub fn dtls_sessions(&self) -> usize {
        self.0.dtls_sessions.open()
    }

    /// Loads the certificate files again for new DTLS sessions (the TLS
    /// resolver reloads its own); Ok without DTLS listeners.
    pub fn reload_dtls(&self, cert_file: &std::path::Path, key_file: &std::path::Path) -> anyhow::Result<()> {
        match &self.0.dtls {
            Some(d) => d.reload(cert_file, key_file),
            None => Ok(()),
        }
    }

    /// Bytes queued towards TCP/TLS clients that they have not read yet.
    pub fn stream_queued_bytes(&self) -> usize {
        self.0.stream_queued.used()
    }

    /// The current shared settings (credentials to mint with, relay addresses).
    pub fn shared(&self) -> Shared {
        self.0.shared.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops accepting new allocations on every shard; returns once every
    /// shard has it in force (then /readyz reports draining).
    pub async fn drain(&self) {
        self.ask(Control::Drain).await;
        self.0.draining.store(true, Ordering::Relaxed);
    }

    async fn ask<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Control) -> Vec<Option<T>> {
        self.ask_each(|_, tx| make(tx)).await
    }

    /// [`ServerHandle::ask`] with a request of its own for each shard (by index).
    async fn ask_each<T>(&self, mut make: impl FnMut(usize, oneshot::Sender<T>) -> Control) -> Vec<Option<T>> {
        let mut waits = Vec::new();
        for (i, c) in self.0.controls.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            let sent = c.send(make(i, tx)).is_ok();
            waits.push((sent, rx));
        }
        let mut out = Vec::new();
        for (sent, rx) in waits {
            out.push(if sent {
                tokio::time::timeout(ASK_TIMEOUT, rx).await.ok().and_then(Result::ok)
            } else {
                None
            });
        }
        out
    }

    /// True if every shard's event loop answers within the timeout.
    pub async fn ping(&self) -> bool {
        self.ask(Control::Ping).await.iter().all(Option::is_some)
    }

    pub async fn snapshots(&self) -> Vec<ShardSnapshot> {
        self.ask(Control::Snapshot).await.into_iter().flatten().collect()
    }

    pub async fn allocations(&self) -> Vec<AllocationInfo> {
        self.ask(Control::List).await.into_iter().flatten().flatten().collect()
    }

    /// Closes the allocation of `client` (any transport); true if one was closed.
    pub async fn close(&self, tuple: proto::FiveTuple) -> bool {
        self.ask(|tx| Control::Close(tuple, tx))
            .await
            .into_iter()
            .flatten()
            .any(|x| x)
    }

    pub fn set_log_handle(&self, log: crate::logging::LogHandle) {
        *self.0.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(log);
    }

    /// Changes the log level live (admin); an error if it does not parse.
    pub fn set_log_level(&self, level: &str) -> anyhow::Result<()> {
        match &*self.0.log.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(h) => h.set_level(level),
            None => anyhow::bail!("logging is not managed by this process"),
        }
    }

    /// Refuses `username` on every shard, now and after reloads, and closes
    /// its live allocations; returns once every shard has it in force, with
    /// the number of usernames
    /// revoked now (expired REST usernames pruned).
    pub async fn revoke(&self, username: &str) -> usize {
        let count = {
            let static_users = self
                .0
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .turn
                .users
                .clone();
            let mut revoked = self.0.revoked.lock().unwrap_or_else(|e| e.into_inner());
            revoked.insert(username.to_string());
            prune_revoked(&mut revoked, &static_users, unix_now());
            revoked.len()
        };
        self.ask(|tx| Control::Revoke(username.to_string(), tx)).await;
        count
    }

    /// The fast path's counters, if it is attached.
    pub fn fastpath_counters(&self) -> Option<FastpathCounters> {
        let guard = self.0.fastpath.lock().unwrap_or_else(|e| e.into_inner());
        let maps = guard.as_ref()?.maps();
        Some(FastpathCounters {
            bindings: maps.stat(Stat::Binding),
            to_peer: maps.stat(Stat::ToPeer),
            to_client: maps.stat(Stat::ToClient),
            passed: maps.stat(Stat::Pass),
        })
    }

    /// The usernames revoked now (for the cluster's resynchronisation).
    pub fn revoked_names(&self) -> Vec<String> {
        self.0
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// How many usernames are revoked now.
    pub fn revocations(&self) -> usize {
        self.0.revoked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Applies `new` live: everything but the restart-only keys of
    /// [`crate::config::RESTART_KEYS`] (secrets, users, peer policy, quotas,
    /// lifetimes, limits, the TLS certificate), and reports which of those
    /// changed. The caller has already validated `new` (Config::load).
    /// Returns once every shard runs with the new settings.
    pub async fn reload(&self, new: &Config) -> anyhow::Result<ReloadReport> {
        let running = self.config();
        let ReloadPlan { applied, needs_restart } = ReloadPlan::new(&running, new);
        // Everything fallible first, so a failure leaves the old settings in force.
        let mut shared = self.shared().reloaded(&applied)?;
        shared.credentials.revoked = {
            let mut revoked = self.0.revoked.lock().unwrap_or_else(|e| e.into_inner());
            prune_revoked(&mut revoked, &applied.turn.users, unix_now());
            revoked.clone()
        };
        if let Some(cert) = &self.0.cert {
            cert.reload(&applied.tls.cert_file, &applied.tls.key_file)?;
        }
        self.reload_dtls(&applied.tls.cert_file, &applied.tls.key_file)?;
        shared.quotas.set_limits(quota_limits(&applied));
        let n = self.shard_count();
        let offload = applied.fastpath.mode != FastpathMode::Off
            && self.0.fastpath.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let configs = (0..n)
            .map(|i| {
                let c = shared.core_config(&applied, i, n)?;
                Ok(proto::ServerConfig { offload, ..c })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut configs = configs.into_iter();
        self.ask_each(|_, tx| {
            let cfg = configs.next().expect("one core config per shard");
            Control::Reload(Box::new(cfg), tx)
        })
        .await;
        if !offload {
            // Every shard took its entries back: detach (drops the bpf_links).
            drop(self.0.fastpath.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        *self.0.shared.write().unwrap_or_else(|e| e.into_inner()) = shared;
        *self.0.config.lock().unwrap_or_else(|e| e.into_inner()) = applied;
        Ok(ReloadReport { needs_restart })
    }
}

/// Drops from `revoked` every REST username (`EXPIRY:USER`) whose expiry
/// has passed: it can never authenticate again, revoked or not, so keeping
/// it only grows the set. A static user's name stays (its credential never
/// expires), and so does anything else, until a restart. The shards prune
/// their own copies by the same rule on each revoke
/// (`Credentials::prune_revoked`), and take this set on each reload.
fn prune_revoked(revoked: &mut HashSet<String>, static_users: &BTreeMap<String, Secret>, unix_now: u64) {
    revoked.retain(|u| static_users.contains_key(u) || !revocation_lapsed(u, unix_now));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_rest_usernames_leave_the_revoked_set() {
        let mut static_users = BTreeMap::new();
        static_users.insert("100:static".to_string(), Secret::new("password"));
        let mut revoked: HashSet<String> = ["100:gone", "200:live", "100:static", "alice", "x:y"]
            .map(String::from)
            .into();
        prune_revoked(&mut revoked, &static_users, 150);
        let mut left: Vec<_> = revoked.into_iter().collect();
        left.sort();
        assert_eq!(left, ["100:static", "200:live", "alice", "x:y"]);
    }
}
