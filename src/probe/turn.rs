//! The TURN client operations the probe needs (RFC 8656): Allocate (§7),
//! Refresh (§8), CreatePermission (§10), Send/Data indications (§11),
//! ChannelBind and ChannelData (§12).

use std::net::SocketAddr;
use std::time::Instant;

use proto::wire::{attr, Class, Message, Method};

use super::session::{ProbeError, Session};

/// RFC 8656 §18.8: REQUESTED-TRANSPORT = UDP (17), three bytes RFFU.
const UDP_PROTOCOL: [u8; 4] = [17, 0, 0, 0];
/// RFC 6062 §6.1: REQUESTED-TRANSPORT = TCP (6).
pub const TCP_PROTOCOL: [u8; 4] = [6, 0, 0, 0];

/// What a successful Allocate returned.
pub struct Allocation {
    pub relay: SocketAddr,
    pub reflexive: SocketAddr,
    pub lifetime: u32,
    pub rtt: std::time::Duration,
}

/// Data that came back through a relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    Indication { peer: SocketAddr, data: Vec<u8> },
    Channel { channel: u16, data: Vec<u8> },
}

impl Session {
    /// RFC 8656 §7.1: Allocate a UDP relay.
    pub fn allocate(&mut self) -> Result<Allocation, ProbeError> {
        self.allocate_transport(UDP_PROTOCOL)
    }

    /// Allocate a relay of this REQUESTED-TRANSPORT (UDP, or TCP for RFC 6062).
    pub fn allocate_transport(&mut self, protocol: [u8; 4]) -> Result<Allocation, ProbeError> {
        let r = self.request(Method::ALLOCATE, &|b| b.add_bytes(attr::REQUESTED_TRANSPORT, &protocol))?;
        self.allocated = true;
        Ok(Allocation {
            relay: r.xor_address(attr::XOR_RELAYED_ADDRESS)?,
            // RFC 8656 §7.2: a success carries XOR-MAPPED-ADDRESS.
            reflexive: r.xor_address(attr::XOR_MAPPED_ADDRESS)?,
            lifetime: r.u32(attr::LIFETIME)?,
            rtt: r.rtt,
        })
    }

    /// RFC 8656 §8.1: Refresh; lifetime 0 deletes the allocation.
    pub fn refresh(&mut self, lifetime: u32) -> Result<(), ProbeError> {
        self.request(Method::REFRESH, &|b| b.add_u32(attr::LIFETIME, lifetime))
            .map(|_| ())
    }

    /// Deletes the allocation, if this session made one.
    pub fn delete_allocation(&mut self) -> Result<(), ProbeError> {
        if !self.allocated {
            return Ok(());
        }
        self.refresh(0)?;
        self.allocated = false;
        Ok(())
    }

    /// RFC 8656 §10.1: install a permission for `peer`'s IP address.
    pub fn create_permission(&mut self, peer: SocketAddr) -> Result<(), ProbeError> {
        self.request(Method::CREATE_PERMISSION, &|b| {
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer)
        })
        .map(|_| ())
    }

    /// RFC 8656 §12.1: bind `channel` (0x4000–0x4FFF) to `peer`.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), ProbeError> {
        self.request(Method::CHANNEL_BIND, &|b| {
            b.add_bytes(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0])?;
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer)
        })
        .map(|_| ())
    }

    /// RFC 8656 §11.1: a Send indication carrying `data` to `peer`.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), ProbeError> {
        self.indicate(Method::SEND, &|b| {
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer)?;
            b.add_bytes(attr::DATA, data)
        })
    }

    pub fn send_channel(&mut self, channel: u16, data: &[u8]) -> Result<(), ProbeError> {
        self.conn
            .send_channel_data(channel, data)
            .map_err(|e| ProbeError::Io(format!("send: {e}")))
    }

    /// The next relayed message (RFC 8656 §11.4 Data indication or §12.6
    /// ChannelData), or a timeout at `until`. Anything else is skipped.
    pub fn recv_relayed(&mut self, until: Instant) -> Result<Relayed, ProbeError> {
        let started = Instant::now();
        loop {
            let bytes = match self.backlog.pop_front() {
                Some(b) => b,
                None => match self.conn.recv(until) {
                    Ok(Some(b)) => b,
                    Ok(None) => return Err(ProbeError::Timeout(started.elapsed(), " (nothing relayed)".into())),
                    Err(e) => return Err(ProbeError::Io(format!("receive: {e}"))),
                },
            };
            if let Some(r) = decode_relayed(&bytes)? {
                return Ok(r);
            }
        }
    }
}

/// Decodes a Data indication or ChannelData; `None` for other messages.
fn decode_relayed(bytes: &[u8]) -> Result<Option<Relayed>, ProbeError> {
    if bytes.first().is_some_and(|b| b & 0xC0 == 0x40) {
        if bytes.len() < 4 {
            return Err(ProbeError::Malformed("ChannelData shorter than its header".into()));
        }
        let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        // RFC 8656 §12.5: over UDP the datagram may carry padding after the data.
        let data = bytes
            .get(4..4 + len)
            .ok_or_else(|| ProbeError::Malformed("ChannelData length exceeds the message".into()))?;
        return Ok(Some(Relayed::Channel {
            channel,
            data: data.to_vec(),
        }));
    }
    let Ok(m) = Message::parse(bytes) else { return Ok(None) };
    if m.message_type().method != Method::DATA || m.message_type().class != Class::Indication {
        return Ok(None);
    }
    let peer = m
        .get(attr::XOR_PEER_ADDRESS)
        .ok_or_else(|| ProbeError::Malformed("Data indication without XOR-PEER-ADDRESS".into()))
        .and_then(|v| {
            attr::decode_address(v, Some(&m.transaction_id()))
                .map_err(|e| ProbeError::Malformed(format!("XOR-PEER-ADDRESS: {e}")))
        })?;
    let data = m
        .get(attr::DATA)
        .ok_or_else(|| ProbeError::Malformed("Data indication without DATA".into()))?;
    Ok(Some(Relayed::Indication {
        peer,
        data: data.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_channel_data_and_refuses_short_frames() {
        assert_eq!(
            decode_relayed(&[0x40, 0x00, 0x00, 0x02, 7, 8, 0, 0]).unwrap(),
            Some(Relayed::Channel {
                channel: 0x4000,
                data: vec![7, 8]
            })
        );
        assert!(decode_relayed(&[0x40, 0x00, 0x00, 0x09, 7]).is_err());
        assert!(decode_relayed(&[0x40, 0x00]).is_err());
        // Not STUN, not ChannelData: skipped, not a panic.
        assert_eq!(decode_relayed(&[0xff; 30]).unwrap(), None);
    }
}
