//! One TURN allocation and the permissions and channels it holds
//! (RFC 8656 §6, §9, §12). Plain data with time passed in.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::addr::{Family, FiveTuple, PeerAddr};
use crate::wire::TransactionId;

/// RFC 8656 §9: "The permission lifetime MUST be 300 seconds (= 5
/// minutes)." The default of [`crate::ServerConfig::permission_lifetime`],
/// which only tests and labs change.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: "A channel binding lasts for 10 minutes unless refreshed."
/// The default of [`crate::ServerConfig::channel_lifetime`].
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// RFC 8656 §12: after a binding expires, neither its number nor its peer may
/// be bound to anything else for another 5 minutes.
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

/// Permissions and channels one allocation may hold. Lookups on the packet
/// path scan these lists, so they are capped: past the cap a request gets
/// 508 (Insufficient Capacity), which RFC 8656 §10.2 and §12.2 allow. ICE uses
/// a few dozen at most.
pub const MAX_PERMISSIONS: usize = 128;
pub const MAX_CHANNELS: usize = 128;

/// Index of a relay socket, shared by the core and the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

#[derive(Debug, Clone, Copy)]
pub struct Relay {
    pub id: RelayId,
    /// The address the socket is bound to.
    pub local: SocketAddr,
    /// The address peers see (external_ip applied): what XOR-RELAYED-ADDRESS says.
    pub public: SocketAddr,
    /// When this relay's family of the allocation ends: each family of a
    /// dual allocation is refreshed and deleted on its own (RFC 8656 §8.1).
    pub expires: Instant,
}

impl Relay {
    pub fn family(&self) -> Family {
        Family::of(self.local.ip())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
}

/// A channel number (RFC 8656 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(pub u16);

impl ChannelNumber {
    /// RFC 8656 §12: the numbers a client may bind.
    pub const RANGE: std::ops::RangeInclusive<u16> = 0x4000..=0x4FFF;
    /// RFC 5766 §11: the older, wider range (0x7FFF is reserved there too).
    pub const LEGACY_RANGE: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFE;

    /// `n` if a client may bind it: RFC 8656 §12.2 "the channel number is in
    /// the range 0x4000 through 0x4FFF (inclusive)", or the RFC 5766 range
    /// with `legacy`.
    pub fn new(n: u16, legacy: bool) -> Option<ChannelNumber> {
        let valid = if legacy { Self::LEGACY_RANGE } else { Self::RANGE };
        valid.contains(&n).then_some(ChannelNumber(n))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub number: ChannelNumber,
    pub peer: PeerAddr,
    /// Bound until then; in cooldown for CHANNEL_COOLDOWN after.
    pub expires: Instant,
}

/// Bytes and packets relayed, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub to_peer_bytes: u64,
    pub to_peer_packets: u64,
    pub to_client_bytes: u64,
    pub to_client_packets: u64,
}

impl Traffic {
    /// One datagram of `len` payload bytes relayed to the peer.
    pub fn count_to_peer(&mut self, len: usize) {
        self.to_peer_bytes += len as u64;
        self.to_peer_packets += 1;
    }

    /// One datagram of `len` payload bytes relayed to the client.
    pub fn count_to_client(&mut self, len: usize) {
        self.to_client_bytes += len as u64;
        self.to_client_packets += 1;
    }

    /// Adds another set of counters to these.
    pub fn add(&mut self, other: &Traffic) {
        self.to_peer_bytes += other.to_peer_bytes;
        self.to_peer_packets += other.to_peer_packets;
        self.to_client_bytes += other.to_client_bytes;
        self.to_client_packets += other.to_client_packets;
    }
}

/// A token bucket in bytes (per-allocation bandwidth cap).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate_bytes_per_sec: u64, now: Instant) -> Self {
        Bucket {
            rate: rate_bytes_per_sec,
            tokens: rate_bytes_per_sec,
            last: now,
        }
    }

    /// True for a rate of 0: no cap.
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0
    }

    /// Takes `n` bytes if available. A rate of 0 means unlimited.
    pub fn take(&mut self, n: usize, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed >= Duration::from_millis(1) {
            let add = (self.rate as u128 * elapsed.as_micros() / 1_000_000) as u64;
            // One second's worth is the burst size.
            self.tokens = (self.tokens + add).min(self.rate);
            self.last = now;
        }
        if self.tokens >= n as u64 {
            self.tokens -= n as u64;
            true
        } else {
            false
        }
    }
}

/// A cached response to a retransmittable request.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub tid: TransactionId,
    pub bytes: Vec<u8>,
}

impl CachedResponse {
    /// Copies the response into `out` if it answers transaction `tid`.
    pub fn replay(&self, tid: &TransactionId, out: &mut [u8]) -> Option<usize> {
        let n = self.bytes.len();
        (self.tid == *tid && n <= out.len()).then(|| {
            out[..n].copy_from_slice(&self.bytes);
            n
        })
    }
}

#[derive(Debug)]
pub struct Allocation {
    pub tuple: FiveTuple,
    pub username: String,
    /// One relay per family, each with its own expiry; the allocation ends
    /// with the last of them.
    pub relays: Vec<Relay>,
    /// The relayed addresses (as the client was told) of families that
    /// ended before the allocation (RFC 8656 §8.1): its close event names
    /// them with the rest, since its traffic counts theirs.
    pub ended_relays: Vec<SocketAddr>,
    pub created: Instant,
    pub permissions: Vec<Permission>,
    pub channels: Vec<Channel>,
    /// The success response to the Allocate that created this allocation,
    /// for retransmissions of that Allocate (RFC 8656 §7.2).
    pub allocate_response: CachedResponse,
    /// The last response to any other request (RFC 8489 §6.3.1: a
    /// retransmitted request gets the same answer).
    pub last_response: Option<CachedResponse>,
    pub traffic: Traffic,
    /// The bandwidth cap applies each way: this bucket for client to peer ...
    pub bucket: Bucket,
    /// ... and this one for peer to client.
    pub bucket_to_client: Bucket,
    /// The deadline this allocation's live timer entry is queued for.
    pub armed: Option<Instant>,
    /// A TCP relay allocation (RFC 6062): its relays are TCP listeners and
    /// data goes over peer data connections, not Send or ChannelData.
    pub tcp: bool,
    /// The channels the driver's kernel fast path relays for this
    /// allocation, as last told (see [`crate::output::Offload`]).
    pub offloaded: Vec<OffloadedChannel>,
}

/// A channel the kernel may relay on its own until `until`: the earliest of
/// the binding's, the permission's and its relay's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadedChannel {
    pub number: ChannelNumber,
    pub peer: PeerAddr,
    pub until: Instant,
}

impl Allocation {
    /// When the allocation ends: when its last family does (RFC 8656 §8.1).
    pub fn expires(&self) -> Instant {
        self.relays.iter().map(|r| r.expires).max().unwrap_or(self.created)
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires()
    }

    /// The relay of the peer's family: the relayed transport address data
    /// to that peer leaves from (RFC 8656 §11.2, §12.6).
    pub fn relay_for(&self, peer: &PeerAddr) -> Option<&Relay> {
        self.relays.iter().find(|r| r.family() == peer.family())
    }

    pub fn has_family(&self, family: Family) -> bool {
        self.relays.iter().any(|r| r.family() == family)
    }

    /// RFC 8656 §9: permissions match on IP address only. A permission
    /// belongs to the relay of its family and lapses with it (§8.1).
    pub fn permits(&self, ip: IpAddr, now: Instant) -> bool {
        let family = Family::of(ip);
        self.relays.iter().any(|r| r.family() == family && now < r.expires)
            && self.permissions.iter().any(|p| p.ip == ip && now < p.expires)
    }

    /// Takes the relay of `family` out of this allocation with the
    /// permissions and channels to that family's peers: RFC 8656 §8.1,
    /// "Deleting a single allocation destroys any permissions or channels
    /// associated with that particular allocation; it MUST NOT affect any
    /// permissions or channels associated with allocations for the other
    /// address family." The caller frees the relay (id, port, socket).
    pub fn remove_family(&mut self, family: Family) -> Option<Relay> {
        let i = self.relays.iter().position(|r| r.family() == family)?;
        self.permissions.retain(|p| Family::of(p.ip) != family);
        self.channels.retain(|c| c.peer.family() != family);
        self.offloaded.retain(|c| c.peer.family() != family);
        Some(self.relays.remove(i))
    }

    /// How many of `ips` would be new permissions.
    pub fn new_permissions(&self, ips: impl Iterator<Item = IpAddr>) -> usize {
        ips.filter(|ip| !self.permissions.iter().any(|p| p.ip == *ip)).count()
    }

    /// Installs or refreshes the permission for `ip`, for `lifetime`.
    pub fn permit(&mut self, ip: IpAddr, now: Instant, lifetime: Duration) {
        let expires = now + lifetime;
        match self.permissions.iter_mut().find(|p| p.ip == ip) {
            Some(p) => p.expires = expires,
            None => self.permissions.push(Permission { ip, expires }),
        }
    }

    /// The bound (unexpired) channel with this number.
    pub fn channel_by_number(&self, number: ChannelNumber, now: Instant) -> Option<&Channel> {
        self.channels.iter().find(|c| c.number == number && now < c.expires)
    }

    /// The bound (unexpired) channel to this peer.
    pub fn channel_by_peer(&self, peer: &PeerAddr, now: Instant) -> Option<&Channel> {
        self.channels.iter().find(|c| c.peer == *peer && now < c.expires)
    }

    /// RFC 8656 §12.2 checks for binding `number` to `peer`: a number bound
    /// (or cooling down) to another peer, or a peer bound (or cooling down)
    /// to another number, is refused.
    pub fn channel_conflict(&self, number: ChannelNumber, peer: &PeerAddr, now: Instant) -> bool {
        self.channels.iter().any(|c| {
            let held = now < c.expires + CHANNEL_COOLDOWN;
            held && ((c.number == number) != (c.peer == *peer))
        })
    }

    /// Binds or refreshes `number` to `peer` for `lifetime` (after
    /// `channel_conflict` said no).
    pub fn bind_channel(&mut self, number: ChannelNumber, peer: PeerAddr, now: Instant, lifetime: Duration) {
        let expires = now + lifetime;
        match self.channels.iter_mut().find(|c| c.number == number && c.peer == peer) {
            Some(c) => c.expires = expires,
            None => self.channels.push(Channel { number, peer, expires }),
        }
    }

    /// Forgets expired permissions and channels past their cooldown.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|p| now < p.expires);
        self.channels.retain(|c| now < c.expires + CHANNEL_COOLDOWN);
    }

    /// When something about this allocation next changes by itself, after
    /// `now`: a permission or binding expires, a cooldown ends, or a family
    /// of the allocation expires. Deadlines already past are skipped, so a
    /// channel in its cooldown does not make the timer fire again at once.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let relays = self.relays.iter().map(|r| r.expires);
        let perms = self.permissions.iter().map(|p| p.expires);
        let chans = self.channels.iter().map(|c| {
            if now < c.expires {
                c.expires
            } else {
                c.expires + CHANNEL_COOLDOWN
            }
        });
        relays
            .chain(perms)
            .chain(chans)
            .filter(|&t| now < t)
            .min()
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelNumber;

    #[test]
    fn channel_numbers_follow_rfc_8656_unless_legacy() {
        for (n, rfc8656, legacy) in [
            (0x3FFF, false, false),
            (0x4000, true, true),
            (0x4FFF, true, true),
            (0x5000, false, true),
            (0x7FFE, false, true),
            (0x7FFF, false, false),
        ] {
            assert_eq!(ChannelNumber::new(n, false).is_some(), rfc8656, "{n:#x}");
            assert_eq!(ChannelNumber::new(n, true).is_some(), legacy, "{n:#x} (legacy)");
        }
    }
}
