//! `turn.bandwidth_limit`: a rate in bytes per second, which operators also
//! write in bits ("1mbit", "2Mbps"), as `tc` and ISPs do.

use serde::Deserializer;

use super::byte_size::byte_unit;
use super::quantity::{deserialize_quantity, number_and_unit};
use super::ByteSize;

/// Parses a rate into bytes per second:
/// - bytes: a bare number, or a size unit ("500kB", "64KiB", "1MB"),
///   optionally with "/s" ("500kB/s");
/// - bits, powers of 1000: "bit", "kbit", "mbit", "gbit" or "bps", "kbps",
///   "Mbps", "Gbps" ("1mbit" = "1Mbps" = 125000 bytes/s), rounded up to
///   whole bytes so a non-zero rate never reads as 0 (unlimited).
///
/// Units are not case-sensitive, except that "MBps"-style spellings (a
/// capital B before "ps") are refused: they mean bytes to some, bits to others.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) =
        number_and_unit(s).ok_or_else(|| format!("`{s}` is not a rate (use e.g. 125000, 500kB, 1mbit, 2Mbps)"))?;
    if unit.ends_with("Bps") {
        return Err(format!(
            "`{s}` is ambiguous: write bytes as e.g. 2MB/s, bits as e.g. 2Mbps or 2mbit"
        ));
    }
    let too_large = || format!("`{s}` is too large");
    let bits = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" => Some(1),
        "kbit" | "kbps" => Some(1000),
        "mbit" | "mbps" => Some(1_000_000),
        "gbit" | "gbps" => Some(1_000_000_000),
        _ => None,
    };
    if let Some(mult) = bits {
        return n.checked_mul(mult).map(|b| b.div_ceil(8)).ok_or_else(too_large);
    }
    let bytes = unit.strip_suffix("/s").unwrap_or(unit).trim_end();
    let mult = byte_unit(bytes).ok_or_else(|| {
        format!(
            "unknown unit `{unit}` in `{s}` (bytes per second: B, kB, KiB, MB, MiB, GB, GiB, \
             optionally with /s; bits per second: bit, kbit, mbit, gbit, bps, kbps, Mbps, Gbps)"
        )
    })?;
    n.checked_mul(mult).ok_or_else(too_large)
}

/// `deserialize_with` for a rate kept as bytes per second.
pub fn deserialize_rate<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    deserialize_quantity(
        d,
        "a rate such as 125000 (bytes/s), \"500kB\" or \"1mbit\"",
        ByteSize,
        |s| parse_rate(s).map(ByteSize),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{load_error, load_with};

    #[test]
    fn reads_bytes_and_bits_per_second() {
        for (text, bytes_per_sec) in [
            ("0", 0),
            ("125000", 125_000),
            ("500kB", 500_000),
            ("500 kB/s", 500_000),
            ("64KiB", 65_536),
            ("1MB/s", 1_000_000),
            // Bits, powers of 1000.
            ("1mbit", 125_000),
            ("500kbit", 62_500),
            ("2Mbps", 250_000),
            ("1gbit", 125_000_000),
            ("1Gbps", 125_000_000),
            ("8000bps", 1000),
            // Rounded up: never 0, which means unlimited.
            ("1bit", 1),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes_per_sec), "{text}");
        }
    }

    #[test]
    fn refuses_ambiguous_and_unknown_units() {
        assert!(parse_rate("2MBps").unwrap_err().contains("ambiguous"));
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
        assert!(parse_rate("1mbyte").unwrap_err().contains("unknown unit `mbyte`"));
        assert!(parse_rate("1.5mbit").is_err());
        assert!(parse_rate("99999999999999gbit").unwrap_err().contains("too large"));
    }

    #[test]
    fn applies_to_turn_bandwidth_limit() {
        let c = load_with(&[("turn.bandwidth_limit", "2Mbps")]).unwrap();
        assert_eq!(c.turn.bandwidth_limit, ByteSize(250_000));
        let e = load_error("turn.bandwidth_limit", "2MBps");
        assert!(e.starts_with("config key `turn.bandwidth_limit`"), "{e}");
    }
}
