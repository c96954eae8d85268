#!/usr/bin/env bash
# Runs ternd's whole test suite. On a fresh Debian machine it first installs
# what the tests use (coturn's client tools, Chromium, and playwright-core
# from npm for tests/browser.rs, node-datachannel (libjuice) for
# tests/libjuice.rs; iproute2, nftables and NSS's certutil for the NAT lab,
# tests/nat_lab*.rs; nginx for tests/ops_kit.rs), so this one command is all a newcomer or CI
# needs. Under CI=true anything that cannot be installed fails the run instead
# of letting tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# package -> a file it provides
declare -A want=(
  [coturn]=/usr/bin/turnutils_stunclient
  [chromium]=/usr/bin/chromium
  # tests/deploy.rs: systemd-analyze verify; the .deb's dependencies
  # (dpkg-shlibdeps) and its postinst (adduser).
  [systemd]=/usr/bin/systemd-analyze
  [dpkg-dev]=/usr/bin/dpkg-shlibdeps
  [adduser]=/usr/sbin/adduser
  # The NAT lab (deploy/lab/ternd-lab): namespaces, routers, and Chromium's
  # trust in the lab's test CA (an NSS database made with certutil); the
  # small-MTU namespaces of tests/turn_dont_fragment.rs (ip, sysctl).
  [iproute2]=/usr/sbin/ip
  [nftables]=/usr/sbin/nft
  [procps]=/usr/sbin/sysctl
  [libnss3-tools]=/usr/bin/certutil
  # tests/ops_kit.rs: `nginx -t` on deploy/nginx/ternd.conf.
  [nginx]=/usr/sbin/nginx
  # The XDP fast path (src/fastpath, issue 14): build.rs compiles it with
  # clang against libbpf's headers; tests/fastpath.rs turns veth offloads
  # off with ethtool and reads ternd's channel map with bpftool.
  [clang]=/usr/bin/clang
  [libbpf-dev]=/usr/include/bpf/bpf_helpers.h
  [bpftool]=/usr/sbin/bpftool
  [ethtool]=/usr/sbin/ethtool
  # TURN over DTLS (src/dtls.rs, issue 15): the openssl crate builds
  # against the system's libssl (pkg-config finds it); tests/dtls.rs runs
  # coturn's `turnutils_uclient -S` (above) against it.
  [libssl-dev]=/usr/include/openssl/ssl.h
  [pkg-config]=/usr/bin/pkg-config
  # tests/cluster.rs: a real Redis for the cluster (started per test).
  [redis-server]=/usr/bin/redis-server
)
missing=()
for pkg in "${!want[@]}"; do
  [ -e "${want[$pkg]}" ] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    # Packages installed for the tests do not start their services (nginx
    # would take port 80): the tests start what they need themselves.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$rc" -ne 0 ]; then exit "$rc"; fi
  else
    echo "tests/run.sh: cannot install ${missing[*]} (needs root and apt-get)" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
  fi
fi

# playwright-core (pinned in tests/browser/package-lock.json) drives Chromium.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "tests/run.sh: npm ci --prefix tests/browser"
  if ! { command -v npm >/dev/null && npm ci --prefix tests/browser --no-audit --no-fund >/dev/null; }; then
    echo "tests/run.sh: cannot install tests/browser/node_modules (needs node and npm)" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
  fi
fi

# node-datachannel (pinned in tests/libjuice/package-lock.json; its libjuice
# binary ships inside the registry package) is the RFC 8489 client of
# tests/libjuice.rs.
if [ ! -d tests/libjuice/node_modules/node-datachannel ]; then
  echo "tests/run.sh: npm ci --prefix tests/libjuice"
  if ! { command -v npm >/dev/null && npm ci --prefix tests/libjuice --no-audit --no-fund >/dev/null; }; then
    echo "tests/run.sh: cannot install tests/libjuice/node_modules (needs node and npm)" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
  fi
fi

# cargo-deb builds the .deb that tests/deploy.rs installs (compiling it takes
# a few minutes, once per machine). Pinned: the packaging relies on its
# systemd-units handling.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "tests/run.sh: cargo install cargo-deb"
  if ! cargo install cargo-deb --locked --version 3.8.0 --quiet; then
    echo "tests/run.sh: cannot install cargo-deb" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
  fi
fi

# The NAT-lab tests run the webrtc-ice agent (crates/ice-agent) inside lab
# namespaces; cargo gives tests outside its package no path to it, so build
# it (and ternd) first, in the profile the tests use.
cargo build --workspace --bins --quiet

# A NAT-lab test that was killed (timeout, Ctrl-C) leaves a lab whose owner
# is dead; the next lab test removes it, and so does this, at the end.
sweep_labs() { if [ "$(id -u)" -eq 0 ]; then deploy/lab/ternd-lab sweep || true; fi; }
trap sweep_labs EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
