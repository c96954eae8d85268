//! Durations in config: "250ms", "30s", "10m", "1h", "2d", or a bare number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::quantity::{deserialize_quantity, number_and_unit};

/// A duration read from config or the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// Parses "250ms", "30s", "10m", "1h", "2d" or "45" (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) =
        number_and_unit(s).ok_or_else(|| format!("`{s}` is not a duration (use e.g. 250ms, 30s, 10m, 1h, 2d)"))?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => return Err(format!("unknown unit `{other}` in `{s}` (use ms, s, m, h or d)")),
    };
    d.ok_or_else(|| format!("`{s}` is too long"))
}

/// Writes whole seconds back in the units [`parse_duration`] reads, largest
/// first: 5400 s is "1h30m", 0 is "0s".
pub fn format_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= secs {
            out.push_str(&format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_quantity(
            d,
            "a duration such as \"30s\", \"10m\" or a number of seconds",
            |secs| ConfigDuration(Duration::from_secs(secs)),
            |s| parse_duration(s).map(ConfigDuration),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn formats_largest_units_first() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (600, "10m"),
            (3600, "1h"),
            (5400, "1h30m"),
            (90_061, "1d1h1m1s"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
    }
}
