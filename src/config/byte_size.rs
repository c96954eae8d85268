//! Byte counts in config: a bare number of bytes (the form every shipped
//! file uses), or a number with a unit: "64KiB", "1MB", "4 MiB".

use serde::{Deserialize, Deserializer};

use super::quantity::{deserialize_quantity, number_and_unit};

/// A size in bytes read from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// As a buffer length; saturates where `usize` is narrower than 64 bits.
    pub fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// Parses "65536", "64KiB", "64 kB", "1MB", "2MiB", "1GiB" (units are not
/// case-sensitive; kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s).ok_or_else(|| format!("`{s}` is not a size (use e.g. 65536, 64KiB, 1MB)"))?;
    let mult = byte_unit(unit).ok_or_else(|| {
        format!(
            "unknown unit `{}` in `{s}` (use B, kB, KiB, MB, MiB, GB or GiB)",
            unit.to_ascii_lowercase()
        )
    })?;
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

/// The bytes in one `unit` ("" and "B" are bytes), not case-sensitive.
pub(super) fn byte_unit(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    })
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_quantity(d, "a size such as 65536, \"64KiB\" or \"1MB\"", ByteSize, |s| {
            parse_byte_size(s).map(ByteSize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_units() {
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("64KiB"), Ok(65536));
        assert_eq!(parse_byte_size("64 kib"), Ok(65536));
        assert_eq!(parse_byte_size("64kB"), Ok(64_000));
        assert_eq!(parse_byte_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_byte_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("10B"), Ok(10));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_byte_size("lots").is_err());
        assert!(parse_byte_size("KiB").is_err());
        assert!(parse_byte_size("-1").is_err());
        assert!(parse_byte_size("1.5MB").is_err());
        assert!(parse_byte_size("64KB/s").unwrap_err().contains("unknown unit"));
        assert!(parse_byte_size("99999999999GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn saturates_into_usize() {
        assert_eq!(ByteSize(4096).usize(), 4096);
        assert_eq!(ByteSize(u64::MAX).usize(), usize::MAX);
    }
}
