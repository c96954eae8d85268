//! "did you mean `listen.udp`?" for a misspelt config key: the known name
//! closest to the unknown one, when it is only a typo or two away.

/// The name in `known` nearest to `unknown` by edit distance, if it is at
/// most 2 edits away and closer than half the name (so `ab` does not
/// suggest `tls`).
pub fn closest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|&(d, k)| d <= 2 && 2 * d < k.chars().count().max(unknown.chars().count()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// The names serde lists after "expected" in an unknown-field message:
/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
pub fn expected_names(expected: &str) -> impl Iterator<Item = &str> {
    expected.split('`').skip(1).step_by(2)
}

/// Levenshtein distance: insertions, deletions and substitutions of chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_edits() {
        assert_eq!(edit_distance("udp", "udp"), 0);
        assert_eq!(edit_distance("udpp", "udp"), 1);
        assert_eq!(edit_distance("levle", "level"), 2);
        assert_eq!(edit_distance("", "tls"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_near_names() {
        let known = ["udp", "tcp", "tls"];
        assert_eq!(closest("udpp", known), Some("udp"));
        assert_eq!(closest("tlss", known), Some("tls"));
        assert_eq!(closest("listener", known), None);
        assert_eq!(closest("ab", known), None);
        assert_eq!(closest("relays", ["relay", "peers"]), Some("relay"));
    }

    #[test]
    fn reads_serdes_expected_list() {
        let names: Vec<_> = expected_names(", expected one of `udp`, `tcp`, `tls`").collect();
        assert_eq!(names, ["udp", "tcp", "tls"]);
        let names: Vec<_> = expected_names(", expected `level` or `format`").collect();
        assert_eq!(names, ["level", "format"]);
    }
}
