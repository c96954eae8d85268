//! Dispatch of a Binding request: plain RFC 8489 §6.3.1, or with RFC 5780
//! NAT behaviour discovery (OTHER-ADDRESS, RESPONSE-ORIGIN, CHANGE-REQUEST)
//! when the server is configured for it and the request reached one of its
//! four UDP addresses.

use std::time::Instant;

use crate::addr::{FiveTuple, Transport};
use crate::binding;
use crate::drop_reason::DropReason;
use crate::nat_discovery::{Change, NatDiscovery};
use crate::output::Output;
use crate::server::Server;
use crate::wire::{attr, Message, Method};

impl Server {
    /// The RFC 5780 setup that applies to a request on `tuple`: only UDP
    /// (the tests of §4.3/§4.4 are UDP ones) reaching one of the four addresses.
    fn discovery_for(&self, tuple: &FiveTuple) -> Option<NatDiscovery> {
        self.config
            .nat_discovery
            .filter(|n| tuple.transport == Transport::Udp && n.serves(tuple.server.0))
    }

    /// True if CHANGE-REQUEST in `msg` is understood (RFC 5780 §7.2): in a
    /// Binding request on a server that can honour it. Anywhere else, and
    /// never on the TURN allocation path, it stays an unknown
    /// comprehension-required attribute, answered with 420.
    pub(crate) fn understands_change_request(&self, tuple: &FiveTuple, msg: &Message<'_>) -> bool {
        msg.message_type().method == Method::BINDING && self.discovery_for(tuple).is_some()
    }

    /// A Binding request (RFC 8489 §6.3.1; RFC 5780 §7.3 when configured).
    pub(crate) fn binding(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>, out: &mut [u8]) -> Output {
        let local = tuple.server.0;
        let mut discovery = None;
        let mut from = local;
        if let Some(nd) = self.discovery_for(&tuple) {
            let change = match msg.get(attr::CHANGE_REQUEST) {
                None => Change::default(),
                Some(value) => match Change::decode(value) {
                    Some(c) => c,
                    None => return self.bare_error(msg, crate::wire::ErrorCode::BAD_REQUEST, out),
                },
            };
            // An answer from another address is what makes this server a
            // reflector for a spoofed source: such answers are charged to the
            // unauthenticated budget (DESIGN.md §10).
            if change != Change::default() && !self.budget.charge(tuple.client.0.ip(), now) {
                return self.drop(DropReason::RateLimited);
            }
            // Both unwraps are Some: `discovery_for` checked `serves(local)`.
            if let (Some(source), Some(other)) = (nd.source(local, change), nd.other_address(local)) {
                from = source;
                discovery = Some((source, other));
            }
        }
        match binding::respond(msg, tuple.client, self.config.software.as_deref(), discovery, out) {
            Ok(len) => {
                self.stats.requests.response(Method::BINDING, None);
                if from == local {
                    Output::Reply(len)
                } else {
                    Output::ReplyFrom { len, from }
                }
            }
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }
}
