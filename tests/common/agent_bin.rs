//! The `ternd-ice-agent` binary (crates/ice-agent) for tests. It belongs to
//! another package, so cargo gives this package's tests no `CARGO_BIN_EXE_`
//! for it. It lives in the same target directory as the test executables
//! (target/<profile>/deps/TEST-HASH → target/<profile>/ternd-ice-agent);
//! `cargo nextest run --workspace` and tests/run.sh build it. When it is
//! missing (e.g. `cargo test --test ice_agent`), it is built here with
//! `cargo build -p ternd-ice-agent` for the same profile and target dir.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The agent binary, built on first use if cargo has not built it yet.
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/<profile>/deps/ice_agent-HASH
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
        let bin = profile_dir.join("ternd-ice-agent");
        if bin.exists() {
            return bin;
        }
        let target_dir = profile_dir.parent().expect("the target directory");
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo
            .args(["build", "-p", "ternd-ice-agent", "--bin", "ternd-ice-agent"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        eprintln!("building ternd-ice-agent: {cargo:?}");
        let status = cargo.status().expect("run cargo build -p ternd-ice-agent");
        assert!(
            status.success() && bin.exists(),
            "cargo build -p ternd-ice-agent failed ({status}); expected {}",
            bin.display()
        );
        bin
    })
    .clone()
}
