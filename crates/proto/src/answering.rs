//! What a response needs to know of the request it answers, so that a
//! response can be written after the request is gone (an Allocate answered
//! once its relay sockets are bound).

use crate::wire::Method;

/// What a response needs to know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub method: Method,
    pub tid: [u8; 12],
    /// The request carried FINGERPRINT, so the response does too.
    pub fingerprint: bool,
}
