//! Quantities in config written either as a bare number (in the base unit)
//! or as text with a unit ("30s", "64KiB"): one visitor for both forms, so
//! durations and byte sizes read TOML integers, environment strings and
//! `--set` values alike.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// Reads a non-negative integer with `from_number` or a string with
/// `from_text`; `expecting` completes "invalid type: …, expected …".
pub fn deserialize_quantity<'de, D, T>(
    d: D,
    expecting: &'static str,
    from_number: fn(u64) -> T,
    from_text: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        from_number: fn(u64) -> T,
        from_text: fn(&str) -> Result<T, String>,
        out: PhantomData<T>,
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            Ok((self.from_number)(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map(self.from_number)
                .map_err(|_| E::custom(format!("{v} is negative")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.from_text)(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_number,
        from_text,
        out: PhantomData,
    })
}

/// Splits "64KiB" or "30 s" into the leading number and the trimmed unit
/// ("" when there is none); None when there is no leading number.
pub fn number_and_unit(s: &str) -> Option<(u64, &str)> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}
