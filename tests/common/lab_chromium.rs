//! Headless Chromium (Debian's, driven by playwright-core through
//! tests/browser/lab.mjs) inside a lab node, trusting the lab CA for TURN
//! over TLS through an NSS database in a HOME of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::chromium::{browser_dir, run_json};
use super::lab::Lab;
use super::lab_ternd::LabTernd;

/// lab.mjs gives up after 55 s; this is the backstop.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Chromium, node, playwright-core and certutil are installed (see
/// [`super::chromium::prerequisites`]).
pub fn prerequisites() -> bool {
    super::chromium::prerequisites(true)
}

/// A HOME whose NSS database trusts the lab CA (Chromium reads
/// $HOME/.pki/nssdb for TLS trust, TURN over TLS included).
pub fn home_trusting(ternd: &LabTernd, tag: &str) -> PathBuf {
    let home = ternd.dir.join(format!("home-{tag}"));
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new("certutil").args(args).output().expect("run certutil");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-N", "-d", &db_arg, "--empty-password"]);
    let ca = ternd.cert.ca_file.display().to_string();
    run(&["-A", "-d", &db_arg, "-n", "ternd-lab-ca", "-t", "C,,", "-i", &ca]);
    home
}

/// Runs `node lab.mjs <args>` inside `node` with HOME = `home` and returns its
/// JSON line, which must say `"ok":true`.
pub fn run(lab: &Lab, node: &str, home: &Path, args: &[&str]) -> Value {
    let mut cmd = lab.command(node, "node");
    cmd.arg(browser_dir().join("lab.mjs")).args(args).env("HOME", home);
    run_json(&mut cmd, &format!("lab.mjs {args:?} in {node}"), RUN_LIMIT)
}
