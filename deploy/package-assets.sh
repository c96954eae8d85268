#!/bin/sh
# Generates the files the Debian package ships besides the binary: shell
# completions (bash, zsh, fish) and the man pages, from the binary itself
# (`ternd completions SHELL`, `ternd man --dir`), into target/release/ where
# Cargo.toml's [package.metadata.deb] assets expect them:
#
#   cargo build --release && deploy/package-assets.sh && cargo deb --no-build
#
# Usage: deploy/package-assets.sh [TERND_BINARY]   (default target/release/ternd;
# CARGO_TARGET_DIR moves target/ as it does for cargo and cargo-deb).
set -eu
out="${CARGO_TARGET_DIR:-target}/release"
ternd="${1:-$out/ternd}"
mkdir -p "$out/completions" "$out/man"
"$ternd" completions bash >"$out/completions/ternd.bash"
"$ternd" completions zsh >"$out/completions/_ternd"
"$ternd" completions fish >"$out/completions/ternd.fish"
rm -f "$out/man/"*.1 "$out/man/"*.1.gz
"$ternd" man --dir "$out/man"   # ternd.1, ternd-probe.1, ...
gzip -9nf "$out/man/"*.1
