//! Traffic through a relay around one moment (an expiry, a Refresh(0), an
//! operator's close, a revocation), for tests/fastpath.rs. Every round
//! sends ChannelData (the kernel's path while its channel is offloaded), a
//! Send indication to the same peer (always the userspace path) and a
//! datagram from the peer back; each carries its round number, so what
//! arrives tells, path by path, the last round that got through.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::turn::{Io, Relayed, TurnClient};

/// How late after its moment a path may still relay: the core's timer
/// firing (one tick, 1 ms) plus scheduling on a loaded machine. Datagrams
/// are only ever cut early by it, never let through late: one sent after
/// the moment is refused by both the kernel's deadline and the core.
pub const SLACK: Duration = Duration::from_millis(250);

/// How far the kernel's deadline may trail the core's: it is computed from
/// the core's `Instant` a few microseconds after reading the clock.
const CLOCK_SKEW: Duration = Duration::from_millis(5);

/// What arrived, by round.
#[derive(Debug, Default)]
pub struct Arrived {
    pub channel_to_peer: Vec<bool>,
    pub indication_to_peer: Vec<bool>,
    /// The peer's datagram came back as ChannelData ...
    pub channel_to_client: Vec<bool>,
    /// ... or as a Data indication (no channel, but a permission).
    pub indication_to_client: Vec<bool>,
}

pub struct Probe {
    /// When each round was sent.
    pub sent: Vec<Instant>,
    pub arrived: Arrived,
    /// The moment of the event the probe triggered: it happened in the
    /// server between these two instants.
    pub event: Option<(Instant, Instant)>,
}

/// One round's payload: a tag byte and the round number.
fn tagged(tag: u8, round: usize) -> [u8; 5] {
    let n = (round as u32).to_be_bytes();
    [tag, n[0], n[1], n[2], n[3]]
}

fn untag(bytes: &[u8]) -> Option<(u8, usize)> {
    let b: [u8; 5] = bytes.try_into().ok()?;
    Some((b[0], u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize))
}

fn mark(flow: &mut [bool], round: usize) {
    if let Some(x) = flow.get_mut(round) {
        *x = true;
    }
}

/// The client's relay and channel to one peer.
pub struct Path<'a> {
    pub client: &'a mut TurnClient,
    pub peer: &'a UdpSocket,
    pub relay: SocketAddr,
    pub channel: u16,
}

/// Something a probe does to the server between two rounds.
pub type Event<'e> = &'e mut dyn FnMut(&mut TurnClient);

/// A probe's plan: `rounds` rounds `step` apart from `start`, with an
/// optional event run after round `at`.
pub struct Plan<'e> {
    pub start: Instant,
    pub rounds: usize,
    pub step: Duration,
    pub event: Option<(usize, Event<'e>)>,
}

impl Plan<'_> {
    /// Rounds covering `from..until`, `step` apart.
    pub fn covering(from: Instant, until: Instant, step: Duration) -> Plan<'static> {
        let rounds = (until.saturating_duration_since(from).as_millis() / step.as_millis()).max(1) as usize + 1;
        Plan {
            start: from,
            rounds,
            step,
            event: None,
        }
    }
}

impl Path<'_> {
    /// Sends the rounds of `plan`, then collects what arrived (each side
    /// read until it stays quiet for a moment).
    pub fn probe(&mut self, plan: Plan<'_>) -> Probe {
        let Plan {
            start,
            rounds,
            step,
            mut event,
        } = plan;
        let peer_addr = self.peer.local_addr().unwrap();
        let mut sent = Vec::with_capacity(rounds);
        let mut window = None;
        for round in 0..rounds {
            let at = start + step * round as u32;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            sent.push(Instant::now());
            self.client.send_channel(self.channel, &tagged(b'c', round));
            self.client.send_indication(peer_addr, &tagged(b's', round));
            self.peer.send_to(&tagged(b'p', round), self.relay).unwrap();
            if let Some((_, run)) = event.as_mut().filter(|(k, _)| *k == round) {
                let before = Instant::now();
                run(self.client);
                window = Some((before, Instant::now()));
            }
        }
        let mut arrived = Arrived {
            channel_to_peer: vec![false; rounds],
            indication_to_peer: vec![false; rounds],
            channel_to_client: vec![false; rounds],
            indication_to_client: vec![false; rounds],
        };
        let quiet = Duration::from_millis(300);
        self.peer.set_read_timeout(Some(quiet)).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..4 * rounds {
            let Ok((n, from)) = self.peer.recv_from(&mut buf) else {
                break;
            };
            assert_eq!(from, self.relay, "the peer hears only the relay");
            match untag(&buf[..n]) {
                Some((b'c', r)) => mark(&mut arrived.channel_to_peer, r),
                Some((b's', r)) => mark(&mut arrived.indication_to_peer, r),
                other => panic!("the peer got {other:?}"),
            }
        }
        self.peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if let Io::Udp(s, _) = &self.client.io {
            s.set_read_timeout(Some(quiet)).unwrap();
        }
        for _ in 0..4 * rounds {
            match self.client.recv_relayed() {
                None => break,
                Some(Relayed::Channel(ch, data)) => {
                    assert_eq!(ch, self.channel);
                    match untag(&data) {
                        Some((b'p', r)) => mark(&mut arrived.channel_to_client, r),
                        other => panic!("the client got {other:?}"),
                    }
                }
                Some(Relayed::Indication(from, data)) => {
                    assert_eq!(from, peer_addr);
                    match untag(&data) {
                        Some((b'p', r)) => mark(&mut arrived.indication_to_client, r),
                        other => panic!("the client got {other:?}"),
                    }
                }
            }
        }
        if let Io::Udp(s, _) = &self.client.io {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        Probe {
            sent,
            arrived,
            event: window,
        }
    }
}

impl Probe {
    /// Asserts that `flow` relayed every round sent before `lo - SLACK`
    /// and none sent from `hi` on (the moment lies between `lo` and `hi`),
    /// and that what arrived is one unbroken run: it stopped once, for
    /// good. Returns how many rounds arrived.
    pub fn assert_stops(&self, flow: &[bool], name: &str, lo: Instant, hi: Instant) -> usize {
        let got = flow.iter().take_while(|x| **x).count();
        let shown = || self.show(flow, lo);
        assert!(
            flow[got..].iter().all(|x| !x),
            "{name}: relayed again after it stopped: {}",
            shown()
        );
        assert!(got > 0, "{name}: nothing got through before the moment: {}", shown());
        assert!(got < flow.len(), "{name}: never stopped: {}", shown());
        let last = self.sent[got - 1];
        let first_stopped = self.sent[got];
        assert!(
            last < hi + CLOCK_SKEW,
            "{name}: a round sent {:?} after the moment got through: {}",
            last.saturating_duration_since(hi),
            shown()
        );
        assert!(
            first_stopped + SLACK >= lo,
            "{name}: stopped {:?} before the moment: {}",
            lo.saturating_duration_since(first_stopped),
            shown()
        );
        got
    }

    /// Asserts that every round of `flow` arrived.
    pub fn assert_all(&self, flow: &[bool], name: &str) {
        assert!(
            flow.iter().all(|x| *x),
            "{name}: lost rounds: {}",
            self.show(flow, self.sent[0])
        );
    }

    /// Asserts that no round of `flow` arrived.
    pub fn assert_none(&self, flow: &[bool], name: &str) {
        assert!(flow.iter().all(|x| !x), "{name}: {}", self.show(flow, self.sent[0]));
    }

    /// The event's window (the probe triggered it).
    pub fn event(&self) -> (Instant, Instant) {
        self.event.expect("the probe ran its event")
    }

    /// Each round as +/- with its send time in ms from `origin`.
    fn show(&self, flow: &[bool], origin: Instant) -> String {
        flow.iter()
            .zip(&self.sent)
            .map(|(x, t)| {
                let ms = if *t >= origin {
                    (*t - origin).as_millis() as i64
                } else {
                    -((origin - *t).as_millis() as i64)
                };
                format!("{}{ms}", if *x { '+' } else { '-' })
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}
