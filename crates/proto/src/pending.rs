//! An Allocate waiting for the driver to bind its relay socket(s)
//! (RFC 8656 §7.2; the core asks with [`crate::Command::BindRelay`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::{Family, FiveTuple};
use crate::allocation::RelayId;
use crate::answering::Answering;
use crate::wire::{ErrorCode, Key, Method, TransactionId};

/// An Allocate waiting for the driver to bind its relay socket(s).
#[derive(Debug, Clone)]
pub(crate) struct PendingAllocate {
    pub tuple: FiveTuple,
    pub tid: TransactionId,
    pub fingerprint: bool,
    pub username: String,
    pub key: Key,
    pub lifetime: Duration,
    /// Families still to bind, in order.
    pub families: Vec<Family>,
    /// Relays bound so far: (id, bound address).
    pub bound: Vec<(RelayId, SocketAddr)>,
    pub even_port: bool,
    pub reserve_next: bool,
    /// A port held by a RESERVATION-TOKEN, to be used for this allocation.
    pub reserved: Option<SocketAddr>,
    pub dont_fragment: bool,
    pub tries: u32,
    /// For a dual allocation: the family that could not be had and why
    /// (ADDRESS-ERROR-CODE, RFC 8656 §7.2 step 9).
    pub address_error: Option<(Family, ErrorCode)>,
    pub token: Option<[u8; 8]>,
    /// REQUESTED-TRANSPORT TCP (RFC 6062): the relays are TCP listeners.
    pub tcp: bool,
}

impl PendingAllocate {
    /// What the Allocate response needs of the request.
    pub(crate) fn answering(&self) -> Answering {
        Answering {
            method: Method::ALLOCATE,
            tid: self.tid,
            fingerprint: self.fingerprint,
        }
    }
}
