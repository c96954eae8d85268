//! A Redis URL fit for a log line: the password of `redis://user:pw@host`
//! replaced, so a secret in `cluster.redis_url` never reaches the logs.

/// `url` with any password in its user part shown as `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparsable URL]".into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(
            redacted("rediss://ternd:s3cr3t@redis.example:6380/2"),
            "rediss://ternd:***@redis.example:6380/2"
        );
        assert_eq!(redacted("redis://:only-pass@h"), "redis://:***@h");
        assert_eq!(redacted("redis://u:p@ss@h/0"), "redis://u:***@h/0");
        assert!(!redacted("garbage s3cr3t").contains("s3cr3t"));
    }
}
