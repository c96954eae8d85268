//! Headless Chromium (Debian's, driven by playwright-core through
//! tests/browser/lab.mjs) inside a lab node, trusting the lab CA for TURN
//! over TLS through an NSS database in a HOME of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::lab::Lab;
use super::lab_ternd::LabTernd;
use super::process;

const CHROMIUM: &str = "/usr/bin/chromium";
/// lab.mjs gives up after 55 s; this is the backstop.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// True when Chromium, node, playwright-core and certutil are installed.
/// Otherwise prints SKIPPED and returns false, or panics under CI=true.
pub fn prerequisites() -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium (apt-get install chromium)");
    }
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("node");
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        missing.push("tests/browser/node_modules (npm ci --prefix tests/browser)");
    }
    if Command::new("certutil").arg("-H").output().is_err() {
        missing.push("certutil (apt-get install libnss3-tools)");
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("missing {}: tests/run.sh installs them", missing.join(", "));
    }
    eprintln!(
        "SKIPPED: missing {}; run tests/run.sh to install them",
        missing.join(", ")
    );
    false
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
    let f = process::spawn(&mut cmd).finish(RUN_LIMIT);
    let (out, err) = (&f.stdout, &f.stderr);
    let Some(status) = f.status else {
        panic!("lab.mjs {args:?} in {node} took over {RUN_LIMIT:?}\nstdout:\n{out}\nstderr:\n{err}");
    };
    let result: Value = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("lab.mjs {args:?} in {node} printed no JSON ({status})\nstdout:\n{out}\nstderr:\n{err}")
        });
    assert!(
        status.success() && result["ok"] == true,
        "lab.mjs {args:?} in {node} failed ({status}): {}\nstderr:\n{err}",
        serde_json::to_string_pretty(&result).unwrap()
    );
    assert_eq!(
        result["pageErrors"],
        serde_json::json!([]),
        "uncaught errors in the page"
    );
    result
}
