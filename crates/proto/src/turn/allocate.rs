//! Allocate (RFC 8656 §7.2, RFC 6156 dual-stack). The relay socket is asked
//! of the driver ([`Command::BindRelay`]); the success response goes out once
//! every relay is bound ([`Server::relay_bound`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::addresses::{address_family, family_code};
use crate::addr::{Family, FiveTuple, Transport};
use crate::allocation::{Allocation, Bucket, CachedResponse, Relay, RelayId, Traffic};
use crate::output::{BindError, Command, Event, Output};
use crate::pending::PendingAllocate;
use crate::quota::QuotaError;
use crate::reservation::{Reservation, RESERVATION_LIFETIME};
use crate::server::Server;
use crate::timers::Timer;
use crate::wire::{attr, ErrorCode, Message};

/// REQUESTED-TRANSPORT protocol numbers: UDP (RFC 8656 §18.8) and TCP
/// (RFC 6062 §5.1).
const UDP: u8 = 17;
const TCP: u8 = 6;
/// Ports tried per relay before answering 508, when each one is taken
/// ([`BindError::AddrInUse`]); any other bind error answers 508 at once.
const BIND_TRIES: u32 = 8;

impl Server {
    /// RFC 8656 §7.2 "Receiving an Allocate Request".
    pub(crate) fn allocate(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>, out: &mut [u8]) -> Output {
        let tid = msg.transaction_id();
        // 2. "The server checks if the 5-tuple is currently in use by an
        // existing allocation. If yes, the server rejects the request with a
        // 437 (Allocation Mismatch) error." A retransmission of the Allocate
        // that created it gets the original success response again.
        if let Some(slot) = self.allocations.by_tuple(&tuple) {
            let a = self.allocations.live(slot);
            if let Some(n) = a.allocate_response.replay(&tid, out) {
                return Output::Reply(n);
            }
        }
        // A retransmission of an Allocate whose relay is still being bound:
        // its answer follows once the driver reports the bind.
        if self.pending_tuples.get(&tuple) == Some(&tid) {
            return Output::Nothing;
        }
        // Step 3's 400 for a missing or malformed REQUESTED-TRANSPORT comes
        // ahead of step 1's 401 for an unsigned request: such an Allocate
        // fails either way, and a 401 to a bare 20-byte header would be 3.2
        // times its size on the wire.
        if !msg.has_integrity() && msg.get(attr::REQUESTED_TRANSPORT).is_none_or(|v| v.len() != 4) {
            return self.refuse_stranger(now, tuple, msg, ErrorCode::BAD_REQUEST, out);
        }
        // 1. "The server MUST require that the request be authenticated."
        let (username, key) = match self.authenticate(now, tuple, msg, out) {
            Ok(v) => v,
            Err(o) => return o,
        };
        if self.allocations.by_tuple(&tuple).is_some() || self.pending_tuples.contains_key(&tuple) {
            return self.error_with_key(msg, ErrorCode::ALLOCATION_MISMATCH, &key, out);
        }
        // Draining for a restart: no new allocations (the client moves on to
        // its next TURN server); existing ones keep working.
        if self.draining {
            return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, &key, out);
        }
        // 3. "The server checks if the request contains a REQUESTED-TRANSPORT
        // attribute. If the REQUESTED-TRANSPORT attribute is not included or
        // is malformed, the server rejects the request with 400. If the
        // attribute is included but specifies a protocol that is not
        // supported by the server, the server rejects the request with 442."
        let tcp = match msg.get(attr::REQUESTED_TRANSPORT) {
            Some(v) if v.len() == 4 && v[0] == UDP => false,
            // RFC 6062 §5.1, with TCP relays turned on (`turn.tcp_relay`).
            Some(v) if v.len() == 4 && v[0] == TCP && self.config.tcp_relay => true,
            Some(v) if v.len() == 4 => return self.error_with_key(msg, ErrorCode::UNSUPPORTED_TRANSPORT, &key, out),
            _ => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
        };
        // 4. DONT-FRAGMENT: supported (the relay socket sets DF).
        let dont_fragment = msg.get(attr::DONT_FRAGMENT).is_some();
        let token = msg.get(attr::RESERVATION_TOKEN);
        let even = msg.get(attr::EVEN_PORT);
        if tcp {
            // RFC 6062 §5.1: "If the client connection transport is not TCP
            // or TLS, the server MUST reject the request with a 400 (Bad
            // Request) error." "If the request contains the DONT-FRAGMENT,
            // EVEN-PORT, or RESERVATION-TOKEN attribute, the server MUST
            // reject the request with a 400 (Bad Request) error."
            if !tuple.transport.is_stream() || dont_fragment || token.is_some() || even.is_some() {
                return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out);
            }
        }
        let raf = msg.get(attr::REQUESTED_ADDRESS_FAMILY);
        let aaf = msg.get(attr::ADDITIONAL_ADDRESS_FAMILY);
        // 5. "The server checks if the request contains a RESERVATION-TOKEN
        // attribute. If yes, and the request also contains an EVEN-PORT or
        // REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY attribute,
        // the server rejects the request with a 400 (Bad Request) error.
        // Otherwise, it checks to see if the token is valid ... If the token
        // is not valid for some reason, the server rejects the request with a
        // 508 (Insufficient Capacity) error."
        let mut reserved = None;
        if let Some(t) = token {
            if even.is_some() || raf.is_some() || aaf.is_some() || t.len() != 8 {
                return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out);
            }
            let mut tk = [0u8; 8];
            tk.copy_from_slice(t);
            // The shared registry says whether the token is good; a
            // reservation made on another shard keeps its port marked there
            // until its timer fires.
            let shared = self.config.reservations.take(&tk, now);
            match self.reservations.remove(&tk) {
                Some(r) if now < r.expires => {
                    // Reserved on this shard: the port goes back to the pool
                    // now, the bind below asks for exactly this port, and
                    // `relay_bound` marks it in use again once it is bound.
                    self.ports.release(r.addr.ip(), r.addr.port());
                    reserved = Some(r.addr);
                }
                Some(r) => {
                    self.ports.release(r.addr.ip(), r.addr.port());
                    return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, &key, out);
                }
                // Made on another shard.
                None => match shared {
                    Some(addr) => reserved = Some(addr),
                    None => return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, &key, out),
                },
            }
            self.compact_timers();
        }
        // EVEN-PORT (§18.7): one byte, R bit = reserve the next port too.
        let (even_port, reserve_next) = match even {
            None => (false, false),
            Some(v) if v.len() == 1 => (true, v[0] & 0x80 != 0),
            Some(_) => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
        };
        // 8. "The server checks if the request contains an EVEN-PORT attribute
        // with the R bit set to 1. If yes, and the request also contains an
        // ADDITIONAL-ADDRESS-FAMILY attribute, the server rejects the request
        // with a 400 (Bad Request) error."
        if reserve_next && aaf.is_some() {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out);
        }
        // 6, 7 and 9. Address families: IPv4 unless REQUESTED-ADDRESS-FAMILY
        // says otherwise; ADDITIONAL-ADDRESS-FAMILY (IPv6 only, else 400)
        // asks for a second, IPv6 relay. Both at once: 400 (step 6).
        let mut families = match (raf, aaf) {
            (Some(_), Some(_)) => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
            (Some(v), None) => match address_family(v) {
                Some(family) => vec![family],
                None => return self.error_with_key(msg, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED, &key, out),
            },
            (None, Some(v)) => match address_family(v) {
                Some(Family::V6) => vec![Family::V4, Family::V6],
                _ => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
            },
            (None, None) => vec![reserved.map_or(Family::V4, |r| Family::of(r.ip()))],
        };
        if let Some(r) = reserved {
            families = vec![Family::of(r.ip())];
        }
        // 7. "If the server does not support the address family requested by
        // the client in REQUESTED-ADDRESS-FAMILY ... 440 (Address Family not
        // Supported)", and likewise for IPv4 without the attribute -- with
        // ADDITIONAL-ADDRESS-FAMILY too, as step 7 comes before step 9. An
        // IPv6 family this server lacks in a dual Allocate is step 9's
        // partial success, reported when its turn to bind comes.
        if self.relay_ip(families[0]).is_none() {
            return self.error_with_key(msg, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED, &key, out);
        }
        // 10. "At any point, the server MAY choose to reject the request with
        // a 486 (Allocation Quota Reached) error if it feels the client is
        // trying to exceed some locally defined allocation quota". The RFC
        // asks for a quota "based on the username ... and not on the client's
        // transport address": the per-user quota is that (a REST name's user
        // part); a per-source-prefix cap comes on top, because an iceServers
        // endpoint hands credentials to whoever asks, while addresses are
        // not free. 508 when the server is full.
        match self.config.quotas.try_acquire(&username, tuple.client.0.ip()) {
            Ok(()) => {}
            Err(QuotaError::User | QuotaError::Source) => {
                return self.error_with_key(msg, ErrorCode::ALLOCATION_QUOTA_REACHED, &key, out)
            }
            Err(QuotaError::Total) => return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, &key, out),
        }
        let lifetime = self.desired_lifetime(msg.get(attr::LIFETIME));
        let pending = PendingAllocate {
            tuple,
            tid,
            fingerprint: msg.has_fingerprint(),
            username,
            key,
            lifetime,
            families,
            bound: Vec::new(),
            even_port,
            reserve_next,
            reserved,
            dont_fragment,
            tries: 0,
            address_error: None,
            token: None,
            tcp,
        };
        self.pending_tuples.insert(tuple, tid);
        self.bind_next(now, pending);
        Output::Nothing
    }

    /// RFC 8656 §7.2 step "computes how long it is willing to allow the
    /// allocation to last" (the same rule as Refresh, §8.2): the requested
    /// value capped at the maximum, but never below the default.
    pub(crate) fn desired_lifetime(&self, requested: Option<&[u8]>) -> Duration {
        let default = self.config.default_lifetime;
        match requested {
            Some(v) if v.len() == 4 => {
                let req = Duration::from_secs(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as u64);
                req.min(self.config.max_lifetime).max(default)
            }
            _ => default,
        }
    }

    /// The relay address configured for `family`, if that family is served.
    fn relay_ip(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.config.relay_ipv4,
            Family::V6 => self.config.relay_ipv6,
        }
    }

    /// Asks the driver for the next relay socket of `p`, or finishes.
    fn bind_next(&mut self, now: Instant, p: PendingAllocate) {
        let Some(&family) = p.families.first() else {
            self.finish_allocate(now, p);
            return;
        };
        let Some(ip) = self.relay_ip(family) else {
            self.family_failed(now, p, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED);
            return;
        };
        let port = match p.reserved {
            Some(r) => Some(r.port()),
            // With R set, the next port must be free too.
            None => self.ports.pick(ip, p.even_port, p.reserve_next, &mut self.rng),
        };
        let Some(port) = port else {
            self.family_failed(now, p, ErrorCode::INSUFFICIENT_CAPACITY);
            return;
        };
        let addr = SocketAddr::new(ip, port);
        let relay = self.allocations.new_relay_id();
        // RFC 8656 §13.1-13.3: when relaying IPv4 to IPv6, IPv6 to IPv6 or
        // IPv6 to IPv4, "the DONT-FRAGMENT attribute MUST be ignored"; it is
        // honoured from IPv4 to IPv4 (§14) and from TCP (§15).
        let dont_fragment = p.dont_fragment && super::data::honours_dont_fragment(&p.tuple, Family::of(ip));
        self.commands.push_back(Command::BindRelay {
            relay,
            addr,
            dont_fragment,
            transport: if p.tcp { Transport::Tcp } else { Transport::Udp },
        });
        self.pending.insert(relay, p);
    }

    /// The driver's answer to [`Command::BindRelay`].
    pub fn relay_bound(&mut self, now: Instant, relay: RelayId, result: Result<SocketAddr, BindError>) {
        let Some(mut p) = self.pending.remove(&relay) else {
            // Not asked for (or already given up): make sure it is closed.
            if result.is_ok() {
                self.commands.push_back(Command::ReleaseRelay { relay });
            }
            return;
        };
        // The client's connection closed meanwhile: nobody to answer.
        if self.pending_tuples.get(&p.tuple) != Some(&p.tid) {
            self.release_relay(relay, result.ok());
            self.abandon_allocate(&p);
            return;
        }
        match result {
            Ok(local) => {
                self.ports.mark(local.ip(), local.port());
                p.bound.push((relay, local));
                p.families.remove(0);
                p.tries = 0;
                if p.reserve_next && p.token.is_none() && local.port() < u16::MAX {
                    let next = SocketAddr::new(local.ip(), local.port() + 1);
                    self.ports.mark(next.ip(), next.port());
                    let token = self.rng.next_u64().to_be_bytes();
                    let expires = now + RESERVATION_LIFETIME;
                    self.reservations.insert(token, Reservation { addr: next, expires });
                    self.config.reservations.insert(token, next, expires);
                    self.timers.push(expires, Timer::Reservation { token });
                    p.token = Some(token);
                }
                self.bind_next(now, p);
            }
            // §7.2 step 8: no relayed transport address could be had, so 508
            // (Insufficient Capacity). Only a taken port is worth trying
            // another port for.
            Err(e) => {
                self.release_relay(relay, None);
                p.tries += 1;
                if e.is_retryable() && p.reserved.is_none() && p.tries < BIND_TRIES {
                    self.bind_next(now, p);
                } else {
                    self.family_failed(now, p, ErrorCode::INSUFFICIENT_CAPACITY);
                }
            }
        }
    }

    /// The relay of `p`'s next family cannot be had, for `code`. RFC 8656
    /// §7.2 step 9, for a dual Allocate: "If the server can partially meet
    /// the request, i.e., if it can only allocate one relayed transport
    /// address of a specific address type, then it includes
    /// ADDRESS-ERROR-CODE attribute in the success response to inform the
    /// client the reason for partial failure of the request. The error code
    /// value signaled in the ADDRESS-ERROR-CODE attribute could be 440
    /// (Address Family not Supported) or 508 (Insufficient Capacity)." So
    /// the other family is bound (or kept) alone; with neither, "the server
    /// rejects the request with a 508 (Insufficient Capacity) error", as a
    /// single-family Allocate is rejected with `code`.
    fn family_failed(&mut self, now: Instant, mut p: PendingAllocate, code: ErrorCode) {
        let family = p.families.remove(0);
        if p.bound.is_empty() && p.families.is_empty() {
            let code = if p.address_error.is_some() {
                ErrorCode::INSUFFICIENT_CAPACITY
            } else {
                code
            };
            self.fail_allocate(p, code);
            return;
        }
        p.tries = 0;
        p.address_error = Some((family, code));
        self.bind_next(now, p);
    }

    /// Releases what `p` holds: its bound relays, its reservation, its quota.
    fn abandon_allocate(&mut self, p: &PendingAllocate) {
        for (id, local) in &p.bound {
            self.release_relay(*id, Some(*local));
        }
        if let Some(t) = p.token {
            if let Some(r) = self.reservations.remove(&t) {
                self.ports.release(r.addr.ip(), r.addr.port());
            }
            self.config.reservations.remove(&t);
        }
        self.config.quotas.release(&p.username, p.tuple.client.0.ip());
    }

    /// Gives up on `p`: releases what it holds and answers with `code`.
    fn fail_allocate(&mut self, p: PendingAllocate, code: ErrorCode) {
        self.pending_tuples.remove(&p.tuple);
        self.abandon_allocate(&p);
        let mut buf = [0u8; 256];
        if let Ok(n) = self.write_response(p.answering(), Some(code), Some(&p.key), &mut buf, |_| Ok(())) {
            self.commands.push_back(Command::SendToClient {
                tuple: p.tuple,
                data: buf[..n].to_vec(),
            });
        }
    }

    /// Every relay is bound: create the allocation and answer.
    fn finish_allocate(&mut self, now: Instant, p: PendingAllocate) {
        let relays: Vec<Relay> = p
            .bound
            .iter()
            .map(|&(id, local)| Relay {
                id,
                local,
                public: self.public_addr(local),
                expires: now + p.lifetime,
            })
            .collect();
        // RFC 8656 §7.2 success response: XOR-RELAYED-ADDRESS (one per
        // family), LIFETIME, RESERVATION-TOKEN if one was made,
        // XOR-MAPPED-ADDRESS, ADDRESS-ERROR-CODE for a failed second family.
        let mut buf = [0u8; 512];
        let built = self.write_response(p.answering(), None, Some(&p.key), &mut buf, |b| {
            for r in &relays {
                b.add_xor_address(attr::XOR_RELAYED_ADDRESS, r.public)?;
            }
            b.add_u32(attr::LIFETIME, p.lifetime.as_secs() as u32)?;
            if let Some(t) = p.token {
                b.add_bytes(attr::RESERVATION_TOKEN, &t)?;
            }
            b.add_xor_address(attr::XOR_MAPPED_ADDRESS, p.tuple.client.0)?;
            if let Some((family, code)) = p.address_error {
                let reason = code.reason();
                let v = b.reserve(attr::ADDRESS_ERROR_CODE, 4 + reason.len())?;
                v[0] = family_code(family);
                v[2] = (code.0 / 100) as u8;
                v[3] = (code.0 % 100) as u8;
                v[4..].copy_from_slice(reason.as_bytes());
            }
            Ok(())
        });
        let Ok(n) = built else {
            self.fail_allocate(p, ErrorCode::SERVER_ERROR);
            return;
        };
        self.pending_tuples.remove(&p.tuple);
        let response = buf[..n].to_vec();
        let alloc = Allocation {
            tuple: p.tuple,
            username: p.username.clone(),
            relays: relays.clone(),
            ended_relays: Vec::new(),
            created: now,
            permissions: Vec::new(),
            channels: Vec::new(),
            allocate_response: CachedResponse {
                tid: p.tid,
                bytes: response.clone(),
            },
            last_response: None,
            traffic: Traffic::default(),
            bucket: Bucket::new(self.config.bandwidth_limit, now),
            bucket_to_client: Bucket::new(self.config.bandwidth_limit, now),
            armed: None,
            offloaded: Vec::new(),
            tcp: p.tcp,
        };
        let slot = self.allocations.insert(alloc);
        self.arm(slot, now);
        self.stats.allocations_created += 1;
        self.commands.push_back(Command::SendToClient {
            tuple: p.tuple,
            data: response,
        });
        self.commands.push_back(Command::Event(Event::AllocationCreated {
            tuple: p.tuple,
            username: p.username,
            relays: relays.iter().map(|r| r.public).collect(),
            lifetime: p.lifetime,
        }));
    }
}
