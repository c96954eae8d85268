//! Message type: method and class interleaved in 14 bits (RFC 8489 §5, Figure 3).

/// The class of a message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// A STUN method number (12 bits). Known methods are constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// RFC 8489 §18.2.
    pub const BINDING: Method = Method(0x001);
    /// RFC 8656 §17.
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// RFC 6062 §6.1 (TCP relay allocations).
    pub const CONNECT: Method = Method(0x00A);
    pub const CONNECTION_BIND: Method = Method(0x00B);
    pub const CONNECTION_ATTEMPT: Method = Method(0x00C);

    /// A short stable name, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Method::BINDING => "binding",
            Method::ALLOCATE => "allocate",
            Method::REFRESH => "refresh",
            Method::SEND => "send",
            Method::DATA => "data",
            Method::CREATE_PERMISSION => "create_permission",
            Method::CHANNEL_BIND => "channel_bind",
            Method::CONNECT => "connect",
            Method::CONNECTION_BIND => "connection_bind",
            Method::CONNECTION_ATTEMPT => "connection_attempt",
            _ => "other",
        }
    }
}

/// Method plus class: the first two bytes of a STUN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    pub method: Method,
    pub class: Class,
}

impl MessageType {
    pub const fn new(method: Method, class: Class) -> Self {
        MessageType { method, class }
    }

    /// Decodes the 16-bit type field. The top two bits must already be known
    /// to be zero; they are ignored here.
    pub fn from_u16(v: u16) -> Self {
        // M0-M3 are bits 0-3, C0 bit 4, M4-M6 bits 5-7, C1 bit 8, M7-M11 bits 9-13.
        let method = (v & 0x000F) | ((v & 0x00E0) >> 1) | ((v & 0x3E00) >> 2);
        let class = match ((v >> 4) & 1) | ((v >> 7) & 2) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        MessageType {
            method: Method(method),
            class,
        }
    }

    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c: u16 = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }

    /// The success or error response type matching this request.
    pub fn response(self, ok: bool) -> Self {
        MessageType::new(self.method, if ok { Class::Success } else { Class::Error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_type_values() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111.
        let req = MessageType::new(Method::BINDING, Class::Request);
        assert_eq!(req.to_u16(), 0x0001);
        assert_eq!(req.response(true).to_u16(), 0x0101);
        assert_eq!(req.response(false).to_u16(), 0x0111);
        // RFC 8656: Allocate request 0x0003, Send indication 0x0016, Data indication 0x0017.
        assert_eq!(MessageType::new(Method::ALLOCATE, Class::Request).to_u16(), 0x0003);
        assert_eq!(MessageType::new(Method::SEND, Class::Indication).to_u16(), 0x0016);
        assert_eq!(MessageType::new(Method::DATA, Class::Indication).to_u16(), 0x0017);
    }

    #[test]
    fn round_trips_every_type() {
        for v in 0u16..0x4000 {
            assert_eq!(MessageType::from_u16(v).to_u16(), v);
        }
    }
}
