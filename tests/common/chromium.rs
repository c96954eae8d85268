//! Headless Chromium in tests: Debian's `chromium`, driven by playwright-core
//! from a script under tests/browser/ that prints one JSON line. What it
//! needs, and that line read and checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process;

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// True when Chromium, node and playwright-core (and `certutil` with
/// `with_certutil`, for trusting a test CA) are installed. Otherwise prints
/// SKIPPED and returns false, or panics under CI.
pub fn prerequisites(with_certutil: bool) -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium (apt-get install chromium)");
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node");
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        missing.push("tests/browser/node_modules (npm ci --prefix tests/browser)");
    }
    if with_certutil && Command::new("certutil").arg("-H").output().is_err() {
        missing.push("certutil (apt-get install libnss3-tools)");
    }
    if missing.is_empty() {
        return true;
    }
    super::missing(&missing.join(", "));
    false
}

/// Runs `cmd` (node and a script) within `limit` (then ends node, which
/// closes its Chromium on SIGTERM) and returns its last JSON line, which must
/// say `"ok":true` with no uncaught page errors. `what` names the run in
/// failure messages.
pub fn run_json(cmd: &mut Command, what: &str, limit: Duration) -> Value {
    let finished = process::spawn(cmd).finish(limit);
    let (out, err) = (&finished.stdout, &finished.stderr);
    let Some(status) = finished.status else {
        panic!("{what} took over {limit:?}\nstdout:\n{out}\nstderr:\n{err}");
    };
    let line = out.lines().rev().find(|l| l.starts_with('{'));
    let result: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{what} printed no JSON ({status})\nstdout:\n{out}\nstderr:\n{err}"));
    assert!(
        status.success() && result["ok"] == true,
        "{what} failed ({status}): {}\nstderr:\n{err}",
        serde_json::to_string_pretty(&result).unwrap()
    );
    assert_eq!(
        result["pageErrors"],
        serde_json::json!([]),
        "{what}: uncaught errors in the page"
    );
    result
}
