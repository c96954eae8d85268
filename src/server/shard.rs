//! One shard: a thread with a single-threaded tokio runtime that owns one
//! protocol core and its own listener sockets. Nothing here is shared with
//! other shards, so the packet path takes no lock.

use std::cell::RefCell;
use std::rc::Rc;

use proto::ServerAddr;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::stream::{self, StreamLimits};
use super::udp;

/// The sockets a shard serves, already bound (so errors surface at startup).
pub struct ShardSockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub tls: Vec<std::net::TcpListener>,
}

pub struct ShardSetup {
    pub index: usize,
    pub sockets: ShardSockets,
    pub core_config: proto::ServerConfig,
    pub tls: Option<TlsAcceptor>,
    pub limits: StreamLimits,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs a shard to completion on the current thread; returns its counters.
pub fn run(setup: ShardSetup) -> std::io::Result<proto::Stats> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let core = Rc::new(RefCell::new(proto::Server::new(setup.core_config)));
    let limits = Rc::new(setup.limits);
    let mut shutdown = setup.shutdown;
    local.block_on(&rt, async {
        for sock in setup.sockets.udp {
            let sock = tokio::net::UdpSocket::from_std(sock)?;
            let addr = ServerAddr(sock.local_addr()?);
            tokio::task::spawn_local(udp::serve(sock, addr, core.clone()));
        }
        let streams = setup
            .sockets
            .tcp
            .into_iter()
            .map(|l| (l, None))
            .chain(setup.sockets.tls.into_iter().map(|l| (l, setup.tls.clone())));
        for (listener, tls) in streams {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = ServerAddr(listener.local_addr()?);
            tokio::task::spawn_local(stream::accept_loop(listener, addr, tls, core.clone(), limits.clone()));
        }
        tracing::debug!(shard = setup.index, "shard running");
        // Ends when the sender flips to true or is dropped.
        let _ = shutdown.wait_for(|stop| *stop).await;
        Ok::<_, std::io::Error>(())
    })?;
    // Dropping the LocalSet and runtime cancels every task and closes sockets.
    drop(local);
    drop(rt);
    let stats = core.borrow().stats().clone();
    Ok(stats)
}
