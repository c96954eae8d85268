//! Compiles the XDP fast path (src/fastpath/bpf/*.c) with clang: stable
//! Rust has no BPF target here. Without clang the ordinary build still
//! succeeds: it sets `cfg(ternd_no_xdp)` and the fast path reports "not
//! built" when asked for (tests/run.sh installs clang and libbpf-dev).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ternd_no_xdp)");
    println!("cargo::rerun-if-changed=src/fastpath/bpf");
    println!("cargo::rerun-if-env-changed=TERND_CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("TERND_CLANG").unwrap_or_else(|_| "clang".into());
    // Build again once clang or libbpf's headers appear (tests/run.sh
    // installs them after CI's first build): cargo reruns a build script
    // whenever a path it watches is missing or changed.
    let clang_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(&clang))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/clang"));
    println!("cargo::rerun-if-changed={}", clang_path.display());
    println!("cargo::rerun-if-changed=/usr/include/bpf/bpf_helpers.h");
    let object = out.join("xdp_relay.o");
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-I/usr/include/aarch64-linux-gnu"])
        .arg("-c")
        .arg("src/fastpath/bpf/xdp_relay.c")
        .arg("-o")
        .arg(&object)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("file not found") => {
            println!("cargo::warning=XDP fast path not built (BPF headers missing); install libbpf-dev");
            println!("cargo::rustc-cfg=ternd_no_xdp");
        }
        Ok(o) => {
            // clang and the headers are there but the program does not compile: a real error.
            panic!(
                "clang failed on src/fastpath/bpf/xdp_relay.c:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => {
            println!("cargo::warning=XDP fast path not built ({clang}: {e}); install clang and libbpf-dev");
            println!("cargo::rustc-cfg=ternd_no_xdp");
        }
    }
}
