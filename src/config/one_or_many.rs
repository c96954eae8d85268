//! List keys also take a single value: `udp = "0.0.0.0:3478"` is read as
//! `udp = ["0.0.0.0:3478"]`, which is what anyone writing it means.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{SeqAccessDeserializer, StrDeserializer};
use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `deserialize_with` for every key in [`super::LIST_KEYS`]: an array, or
/// one string taken as a one-element list.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list, or a single string")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Vec::deserialize(SeqAccessDeserializer::new(seq))
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Vec<T>, E> {
            T::deserialize(StrDeserializer::<E>::new(s)).map(|one| vec![one])
        }
    }

    d.deserialize_any(OneOrMany(PhantomData))
}
