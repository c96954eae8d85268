//! Requests on an existing allocation: Refresh (RFC 8656 §8.2),
//! CreatePermission (§10.2) and ChannelBind (§12.2).

use std::time::{Duration, Instant};

use super::addresses::{address_family, peer_address};
use crate::addr::{FiveTuple, PeerAddr};
use crate::allocation::{CachedResponse, ChannelNumber, MAX_CHANNELS, MAX_PERMISSIONS};
use crate::auth_failure::AuthFailure;
use crate::output::{CloseReason, Output};
use crate::server::Server;
use crate::wire::{attr, ErrorCode, Key, Message, Method};

impl Server {
    /// Authenticates a request on an existing allocation, runs it, and caches
    /// the answer for retransmissions (RFC 8489 §6.3.1: a retransmitted
    /// request gets the same response).
    pub(crate) fn allocation_request(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Output {
        let tid = msg.transaction_id();
        if let Some(slot) = self.allocations.by_tuple(&tuple) {
            let a = self.allocations.live(slot);
            if let Some(n) = a.last_response.as_ref().and_then(|c| c.replay(&tid, out)) {
                return Output::Reply(n);
            }
        }
        // An unsigned request from a 5-tuple with no allocation gets the 437
        // it would get once authenticated ("If the 5-tuple does not match an
        // existing allocation"), bare: nobody who holds an allocation lacks
        // a nonce, and a 401 to a 20-byte header would amplify (DESIGN.md §10).
        if !msg.has_integrity() && self.allocations.by_tuple(&tuple).is_none() {
            return self.refuse_stranger(now, tuple, msg, ErrorCode::ALLOCATION_MISMATCH, out);
        }
        let (username, key) = match self.authenticate(now, tuple, msg, out) {
            Ok(v) => v,
            Err(o) => return o,
        };
        // "If the 5-tuple does not match an existing allocation, ... 437".
        let slot = match self.allocations.by_tuple(&tuple) {
            Some(slot) => slot,
            None => return self.error_with_key(msg, ErrorCode::ALLOCATION_MISMATCH, &key, out),
        };
        // A family (or the whole allocation) past its lifetime whose timer
        // has not run yet is gone all the same.
        if !self.expire(slot, now) {
            return self.error_with_key(msg, ErrorCode::ALLOCATION_MISMATCH, &key, out);
        }
        let a = self.allocations.live(slot);
        // RFC 8656 §5: requests on an allocation must use the credentials
        // that created it, else 441 (Wrong Credentials).
        if a.username != username {
            self.auth_failed(now, tuple, Some(username.as_bytes()), AuthFailure::WrongUser);
            return self.error_with_key(msg, ErrorCode::WRONG_CREDENTIALS, &key, out);
        }
        let output = match msg.message_type().method {
            Method::REFRESH => self.refresh(now, slot, msg, &key, out),
            Method::CREATE_PERMISSION => self.create_permission(now, slot, msg, &key, out),
            Method::CONNECT => self.connect(now, slot, msg, &key, out),
            _ => self.channel_bind(now, slot, msg, &key, out),
        };
        if let Output::Reply(n) = output {
            if let Some(a) = self.allocations.get_mut(slot) {
                a.last_response = Some(CachedResponse {
                    tid,
                    bytes: out[..n].to_vec(),
                });
            }
        }
        output
    }

    /// RFC 8656 §8.2 "Receiving a Refresh Request", with §8.1's dual
    /// allocations: REQUESTED-ADDRESS-FAMILY names the one family a Refresh
    /// refreshes or deletes; without it, it acts on every family.
    fn refresh(&mut self, now: Instant, slot: u32, msg: &Message<'_>, key: &Key, out: &mut [u8]) -> Output {
        // "If the server receives a Refresh Request with a
        // REQUESTED-ADDRESS-FAMILY attribute and the attribute value does not
        // match the address family of the allocation, the server MUST reply
        // with a 443 (Peer Address Family Mismatch) error response." A family
        // of a dual allocation that was deleted no longer matches.
        let family = match msg.get(attr::REQUESTED_ADDRESS_FAMILY) {
            None => None,
            Some(v) => match address_family(v).filter(|f| self.allocations.live(slot).has_family(*f)) {
                Some(family) => Some(family),
                None => return self.error_with_key(msg, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH, key, out),
            },
        };
        // "If the request contains a LIFETIME attribute and the attribute
        // value is zero, then the 'desired lifetime' is zero" -> delete.
        let zero = msg.get(attr::LIFETIME).is_some_and(|v| v == [0, 0, 0, 0]);
        let lifetime = if zero {
            Duration::ZERO
        } else {
            self.desired_lifetime(msg.get(attr::LIFETIME))
        };
        match (zero, family) {
            (true, None) => self.delete_allocation(slot, now, CloseReason::Deleted),
            // §8.1: "This process can also be used to delete an allocation of
            // a specific address family, by setting the lifetime of the
            // Refresh request to zero."
            (true, Some(family)) => self.end_family(slot, family, now, CloseReason::Deleted),
            // "the allocation's time-to-expiry is set to the 'desired
            // lifetime'": that family's, or every family's.
            (false, _) => {
                let a = self.allocations.live_mut(slot);
                for r in a.relays.iter_mut().filter(|r| family.is_none_or(|f| r.family() == f)) {
                    r.expires = now + lifetime;
                }
                self.arm(slot, now);
            }
        }
        let secs = lifetime.as_secs() as u32;
        self.reply(msg, None, Some(key), out, |b| b.add_u32(attr::LIFETIME, secs))
    }

    /// Reads every XOR-PEER-ADDRESS and applies the checks CreatePermission
    /// and ChannelBind share: 400 if none or malformed, 443 if the family has
    /// no relay in this allocation, 403 if policy forbids the peer.
    fn checked_peers(&self, slot: u32, msg: &Message<'_>, out: &mut [PeerAddr; 8]) -> Result<usize, ErrorCode> {
        let tid = msg.transaction_id();
        let a = self.allocations.live(slot);
        let mut n = 0;
        for v in msg.attributes().filter(|x| x.typ == attr::XOR_PEER_ADDRESS) {
            let peer = peer_address(v.value, &tid).ok_or(ErrorCode::BAD_REQUEST)?;
            // More peers than one request may install here: "If the server
            // is unable to fulfill the request", 508 (RFC 8656 §10.2).
            if n == out.len() {
                return Err(ErrorCode::INSUFFICIENT_CAPACITY);
            }
            out[n] = peer;
            n += 1;
        }
        if n == 0 {
            return Err(ErrorCode::BAD_REQUEST);
        }
        for peer in &out[..n] {
            if !a.has_family(peer.family()) {
                return Err(ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
            }
            if !self.config.policy.allows(*peer) {
                return Err(ErrorCode::FORBIDDEN);
            }
        }
        Ok(n)
    }

    /// [`Server::checked_peers`] for a request that names exactly one peer
    /// (ChannelBind, Connect): 400 for more.
    pub(super) fn one_checked_peer(&self, slot: u32, msg: &Message<'_>) -> Result<PeerAddr, ErrorCode> {
        let mut peers = [PeerAddr(([0, 0, 0, 0], 0).into()); 8];
        match self.checked_peers(slot, msg, &mut peers) {
            Ok(1) => Ok(peers[0]),
            Ok(_) | Err(ErrorCode::INSUFFICIENT_CAPACITY) => Err(ErrorCode::BAD_REQUEST),
            Err(code) => Err(code),
        }
    }

    /// RFC 8656 §10.2 "Receiving a CreatePermission Request": all peers are
    /// checked first, then all permissions installed (all or nothing).
    fn create_permission(&mut self, now: Instant, slot: u32, msg: &Message<'_>, key: &Key, out: &mut [u8]) -> Output {
        let mut peers = [PeerAddr(([0, 0, 0, 0], 0).into()); 8];
        let n = match self.checked_peers(slot, msg, &mut peers) {
            Ok(n) => n,
            Err(code) => return self.error_with_key(msg, code, key, out),
        };
        let a = self.allocations.live_mut(slot);
        a.prune(now);
        if a.permissions.len() + a.new_permissions(peers[..n].iter().map(|p| p.ip())) > MAX_PERMISSIONS {
            return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, key, out);
        }
        let lifetime = self.config.permission_lifetime;
        let a = self.allocations.live_mut(slot);
        for p in &peers[..n] {
            a.permit(p.ip(), now, lifetime);
        }
        self.arm(slot, now);
        self.reply(msg, None, Some(key), out, |_| Ok(()))
    }

    /// RFC 8656 §12.2 "Receiving a ChannelBind Request".
    fn channel_bind(&mut self, now: Instant, slot: u32, msg: &Message<'_>, key: &Key, out: &mut [u8]) -> Output {
        // "The request contains both a CHANNEL-NUMBER and an XOR-PEER-ADDRESS
        // attribute" and "the channel number is in the range 0x4000 through
        // 0x4FFF (inclusive)" -- else 400.
        let legacy = self.config.legacy_channel_numbers;
        let number = match msg.get(attr::CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => ChannelNumber::new(u16::from_be_bytes([v[0], v[1]]), legacy),
            _ => None,
        };
        let Some(number) = number else {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, key, out);
        };
        // RFC 6062: a TCP allocation relays over data connections, so a
        // channel (like a Send indication) has no meaning on it.
        if self.allocations.live(slot).tcp {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, key, out);
        }
        let peer = match self.one_checked_peer(slot, msg) {
            Ok(peer) => peer,
            Err(code) => return self.error_with_key(msg, code, key, out),
        };
        // "The channel number is not currently bound to a different transport
        // address (same transport address is OK)" and "the transport address
        // is not currently bound to a different channel number" -- including
        // the 5 minutes after a binding expires (§12).
        let a = self.allocations.live_mut(slot);
        if a.channel_conflict(number, &peer, now) {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, key, out);
        }
        a.prune(now);
        let is_new_channel = !a.channels.iter().any(|c| c.number == number);
        let is_new_permission = a.new_permissions(std::iter::once(peer.ip())) == 1;
        if (is_new_channel && a.channels.len() >= MAX_CHANNELS)
            || (is_new_permission && a.permissions.len() >= MAX_PERMISSIONS)
        {
            return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, key, out);
        }
        let (channel_lifetime, permission_lifetime) = (self.config.channel_lifetime, self.config.permission_lifetime);
        let a = self.allocations.live_mut(slot);
        // "If the request is valid ... the server ... creates or refreshes the
        // channel binding ... also installs or refreshes a permission for the
        // IP address".
        a.bind_channel(number, peer, now, channel_lifetime);
        a.permit(peer.ip(), now, permission_lifetime);
        self.arm(slot, now);
        self.reply(msg, None, Some(key), out, |_| Ok(()))
    }
}
