//! The NAT's filtering behaviour (RFC 4787 §5, tested as in RFC 5780 §4.4)
//! against a server with RFC 5780 support: from one fresh UDP socket, a
//! Binding to the primary address (test I, which also learns OTHER-ADDRESS),
//! then CHANGE-REQUEST asking for the answer from the other IP and port
//! (test II) and from the other port only (test III). Which answers get
//! through the NAT tells its filtering.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use proto::wire::{attr, Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use super::checks::Options;
use super::conn::{is_timeout, remaining, Conn};
use super::report::{Check, Status};
use super::session::{random, Session};

const WHAT: &str = "nat filtering";
/// CHANGE-REQUEST flags (RFC 5780 §7.2): change IP, change port.
const CHANGE_IP_AND_PORT: u32 = 0x6;
const CHANGE_PORT: u32 = 0x2;
/// Sends of one request before its test counts as unanswered.
const TRIES: u32 = 3;

pub fn nat_filtering(primary: SocketAddr, opts: &Options) -> Check {
    let sock = match Conn::udp_socket(opts.bind, primary) {
        Ok(s) => s,
        Err(e) => return result(Status::Fail, "unknown", format!("cannot bind a UDP socket: {e}")),
    };
    let first = match sock.try_clone() {
        Ok(s) => Session::new(Conn::udp(s, primary), None, Instant::now() + opts.timeout)
            .request(Method::BINDING, &|_| Ok(())),
        Err(e) => return result(Status::Fail, "unknown", format!("cannot share the UDP socket: {e}")),
    };
    let other = match first {
        Ok(r) => r.address(attr::OTHER_ADDRESS),
        Err(e) => return result(Status::Fail, "unknown", format!("binding to {primary}: {e}")),
    };
    let Some(other) = other else {
        return result(
            Status::Info,
            "unknown",
            format!("{primary} sends no OTHER-ADDRESS: the server does not do RFC 5780 NAT discovery"),
        );
    };
    // §4.4 test II: from the other IP and port.
    let per_try = opts.timeout / TRIES;
    match change_request(&sock, primary, CHANGE_IP_AND_PORT, per_try) {
        Err(e) => return result(Status::Fail, "unknown", format!("test II to {primary}: {e}")),
        Ok(Some(from)) => {
            return result(
                Status::Info,
                "endpoint-independent",
                format!("endpoint-independent (an answer from {from}, another IP and port, got through)"),
            )
            .with("other_address", other.to_string())
        }
        Ok(None) => {}
    }
    // §4.4 test III: from the primary IP, other port.
    let (verdict, detail) = match change_request(&sock, primary, CHANGE_PORT, per_try) {
        Err(e) => return result(Status::Fail, "unknown", format!("test III to {primary}: {e}")),
        Ok(Some(from)) => (
            "address-dependent",
            format!("address-dependent (an answer from another IP was filtered, one from {from}, another port, got through)"),
        ),
        Ok(None) => (
            "address-and-port-dependent",
            "address-and-port-dependent (answers from another IP and from another port were filtered)".to_string(),
        ),
    };
    result(Status::Info, verdict, detail).with("other_address", other.to_string())
}

fn result(status: Status, verdict: &str, detail: String) -> Check {
    Check::new(status, "nat-filtering", WHAT, detail).with("verdict", verdict)
}

/// Sends a Binding request with CHANGE-REQUEST `flags` to `server` (up to
/// [`TRIES`] times, `per_try` apart) and returns where the success answer
/// came from, or None if none came. An error answer is an error.
fn change_request(
    sock: &UdpSocket,
    server: SocketAddr,
    flags: u32,
    per_try: Duration,
) -> Result<Option<SocketAddr>, String> {
    let tid: TransactionId = random().map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = {
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(Method::BINDING, Class::Request), &tid)
            .map_err(|_| "buffer too small")?;
        b.add_u32(attr::CHANGE_REQUEST, flags).map_err(|_| "buffer too small")?;
        b.add_fingerprint().map_err(|_| "buffer too small")?;
        b.finish()
    };
    let mut reply = vec![0u8; 1500];
    for _ in 0..TRIES {
        sock.send_to(&buf[..n], server).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + per_try;
        while let Some(left) = remaining(deadline) {
            sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            let (len, from) = match sock.recv_from(&mut reply) {
                Ok(r) => r,
                Err(e) if is_timeout(&e) => break,
                Err(e) => return Err(e.to_string()),
            };
            let Ok(m) = Message::parse(&reply[..len]) else { continue };
            if m.transaction_id() != tid {
                continue;
            }
            return match m.message_type().class {
                Class::Success => Ok(Some(from)),
                _ => Err(format!("{server} refused CHANGE-REQUEST")),
            };
        }
    }
    Ok(None)
}
