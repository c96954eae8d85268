//! `alloc`: allocation rate. `clients` UDP clients in parallel, each in a
//! closed loop of Allocate then Refresh(LIFETIME=0) with long-term
//! credentials; the nonce from the first 401 is reused for as long as the
//! server accepts it (a 438 supplies a new one and costs a round trip). A
//! cycle counts only when both succeed. By default (`pool` 0) every cycle
//! uses a new client socket, i.e. a new 5-tuple, as a new TURN client would:
//! coturn keeps a 5-tuple's session (and answers Allocate with 437) for a
//! while after Refresh(0). `pool` N > 0 instead cycles over N sockets per client.
//!
//! `hold`: create `allocations` idle allocations (Allocate only), print
//! `ready ...`, then keep the sockets open for `hold` seconds (the memory figure).

use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::net::Usage;
use crate::turn::{Client, Engine, Op};

pub struct Config {
    pub server: SocketAddrV4,
    pub clients: usize,
    /// Sockets (5-tuples) per client, used in turn; 0: a new socket for every cycle.
    pub pool: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rto: Duration,
    pub user: String,
    pub password: String,
    pub server_pid: Option<u32>,
}

pub fn run(cfg: &Config) -> io::Result<String> {
    let n = cfg.clients.max(1);
    let clients = (0..n).map(|_| Client::with_pool(cfg.server, cfg.pool.max(1))).collect::<io::Result<Vec<_>>>()?;
    let mut eng = Engine::new(clients, &cfg.user, &cfg.password, true, cfg.rto, n)?;
    eng.fresh = cfg.pool == 0;
    let plan = |_: usize, s: usize| match s {
        0 => Some(Op::Allocate),
        1 => Some(Op::Refresh(0)),
        _ => None,
    };
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    eng.drive(&plan, warm_end)?;
    let (c0, u0) = (eng.c, Usage::take(cfg.server_pid));
    eng.drive(&plan, warm_end + cfg.duration)?;
    let u1 = Usage::take(cfg.server_pid);
    let d = eng.c.minus(c0);
    let secs = u0.secs_until(&u1);
    Ok(format!(
        "allocs_per_sec={:.0} requests_per_sec={:.0} cycles={} requests={} responses={} challenges={} errors={} \
         last_error={} retransmits={} failed_clients={} stale={} clients={} pool={} {}",
        d.cycles as f64 / secs,
        d.requests as f64 / secs,
        d.cycles,
        d.requests,
        d.responses,
        d.challenges,
        d.errors,
        d.last_error,
        d.retransmits,
        eng.c.failed,
        d.stale,
        n,
        cfg.pool,
        u0.fields(&u1)
    ))
}

pub struct HoldConfig {
    pub server: SocketAddrV4,
    pub allocations: usize,
    pub parallel: usize,
    pub setup_timeout: Duration,
    pub hold: Duration,
    pub user: String,
    pub password: String,
}

pub fn hold(cfg: &HoldConfig) -> io::Result<()> {
    let n = cfg.allocations.max(1);
    let start = Instant::now();
    let clients = (0..n).map(|_| Client::new(cfg.server)).collect::<io::Result<Vec<_>>>()?;
    let mut eng = Engine::new(clients, &cfg.user, &cfg.password, false, Duration::from_millis(500), cfg.parallel)?;
    let plan = |_: usize, s: usize| (s == 0).then_some(Op::Allocate);
    eng.drive(&plan, start + cfg.setup_timeout)?;
    let secs = start.elapsed().as_secs_f64();
    let done = eng.done();
    println!(
        "ready allocations={done} wanted={n} failed={} last_error={} retransmits={} setup_secs={secs:.2} setup_allocs_per_sec={:.0}",
        eng.c.failed,
        eng.c.last_error,
        eng.c.retransmits,
        done as f64 / secs.max(1e-9)
    );
    io::stdout().flush()?;
    let until = Instant::now() + cfg.hold;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(eng);
    Ok(())
}
