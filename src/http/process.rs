//! Process-level series for /metrics, in the names the Prometheus client
//! libraries use (`process_resident_memory_bytes`, `process_open_fds`,
//! `process_max_fds`), read from /proc/self at scrape time; and
//! `ternd_build_info`.

use std::fmt::Write;

/// Appends the build info and the process series (a series whose /proc file
/// cannot be read is left out rather than reported as 0).
pub fn render(o: &mut String) {
    let _ = writeln!(
        o,
        "# HELP ternd_build_info The running build (always 1).\n# TYPE ternd_build_info gauge\nternd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(
            o,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        let open = dir.count().saturating_sub(1);
        let _ = writeln!(
            o,
            "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {open}"
        );
    }
    if let Some(max) = max_fds() {
        let _ = writeln!(
            o,
            "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\nprocess_max_fds {max}"
        );
    }
}

/// The second field of /proc/self/statm (resident pages) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| pages * p)
}

/// The soft RLIMIT_NOFILE.
fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let mut o = String::new();
        super::render(&mut o);
        let value = |name: &str| -> u64 {
            o.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("{name} in {o}"))
        };
        assert!(value("process_resident_memory_bytes ") > 1 << 20);
        assert!(value("process_open_fds ") >= 3);
        assert!(value("process_max_fds ") >= value("process_open_fds "));
    }
}
