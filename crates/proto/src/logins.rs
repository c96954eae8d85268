//! Authenticated requests counted by how they authenticated (RFC 8489
//! §9.2): password algorithm, USERNAME or USERHASH, and the integrity HMAC.
//! Fixed labels, so an operator can see who still needs MD5 and SHA-1.

use crate::password_algorithm::PasswordAlgorithm;
use crate::wire::Mac;

/// Password algorithms in label order.
pub const ALGORITHMS: [PasswordAlgorithm; 2] = [PasswordAlgorithm::Md5, PasswordAlgorithm::Sha256];
/// How the user was named, in label order: USERNAME (plain) or USERHASH (hashed).
pub const USER_IDS: [&str; 2] = ["plain", "hashed"];
/// Integrity attributes, in label order.
pub const MACS: [&str; 2] = ["sha1", "sha256"];

/// Authenticated requests by [algorithm][user id][mac].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginCounters(pub [[[u64; MACS.len()]; USER_IDS.len()]; ALGORITHMS.len()]);

impl LoginCounters {
    pub fn count(&mut self, algorithm: PasswordAlgorithm, userhash: bool, mac: Mac) {
        let a = usize::from(algorithm == PasswordAlgorithm::Sha256);
        let m = usize::from(mac == Mac::Sha256);
        self.0[a][usize::from(userhash)][m] += 1;
    }

    pub fn merge(&mut self, o: &LoginCounters) {
        for (a, b) in self
            .0
            .iter_mut()
            .flatten()
            .flatten()
            .zip(o.0.iter().flatten().flatten())
        {
            *a += b;
        }
    }

    /// Every count with its labels (password algorithm, user id, mac).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str, u64)> + '_ {
        ALGORITHMS.iter().enumerate().flat_map(move |(a, alg)| {
            USER_IDS.iter().enumerate().flat_map(move |(u, user)| {
                MACS.iter()
                    .enumerate()
                    .map(move |(m, mac)| (alg.label(), *user, *mac, self.0[a][u][m]))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_under_their_labels() {
        let mut c = LoginCounters::default();
        c.count(PasswordAlgorithm::Sha256, true, Mac::Sha256);
        c.count(PasswordAlgorithm::Md5, false, Mac::Sha1);
        let mut d = LoginCounters::default();
        d.merge(&c);
        d.merge(&c);
        let nonzero: Vec<_> = d.iter().filter(|x| x.3 > 0).collect();
        assert_eq!(
            nonzero,
            [("md5", "plain", "sha1", 2), ("sha256", "hashed", "sha256", 2)]
        );
        assert_eq!(d.iter().count(), 8);
    }
}
