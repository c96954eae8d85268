//! `listen.alternate`: the second UDP address of an RFC 5780 server, or
//! `""` for none.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// `deserialize_with` for `listen.alternate`: `""` is None, else an IP and port.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "" => Ok(None),
        s => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not \"\" or an IP:port address"))),
    }
}
