#!/usr/bin/env bash
# Build coturn from source, for the benchmarks' COTURN_BIN (benches/run.sh,
# benches/fastpath.sh). The benchmarks never need it: without COTURN_BIN they
# use the packaged turnserver.
#
#   benches/build-coturn.sh SOURCE [DEST]
#
# SOURCE: a coturn source tree, a git URL (a tag with REF=, default 4.17.1),
# or a .tar.gz of the sources. DEST (default /tmp/coturn-build): where it is
# built, outside this repository. Prints the path of the built turnserver;
# run it as COTURN_BIN=that/path benches/fastpath.sh.
#
# Needs cmake, a C compiler and libevent-dev libssl-dev (libmicrohttpd-dev
# and libsystemd-dev optional); on Debian/Ubuntu INSTALL_DEPS=1 installs them.
set -euo pipefail

SOURCE=${1:?usage: benches/build-coturn.sh SOURCE(dir|git URL|tar.gz) [DEST]}
DEST=${2:-/tmp/coturn-build}
REF=${REF:-4.17.1}
JOBS=${JOBS:-2}

log() { echo "[build-coturn] $*" >&2; }
die() { echo "[build-coturn] error: $*" >&2; exit 1; }

if [[ ${INSTALL_DEPS:-0} == 1 ]]; then
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get install -y libevent-dev libssl-dev libmicrohttpd-dev libsystemd-dev cmake build-essential >&2
fi
command -v cmake >/dev/null || die "cmake not found (INSTALL_DEPS=1 installs it on Debian/Ubuntu)"

mkdir -p "$DEST"
SRC=$DEST/src
if [[ -d $SOURCE/.git || -f $SOURCE/CMakeLists.txt ]]; then
    SRC=$(cd "$SOURCE" && pwd)
elif [[ -d $SOURCE && -f $SOURCE/HEAD ]]; then # a bare git directory
    rm -rf "$SRC" && mkdir -p "$SRC"
    git --git-dir="$SOURCE" archive "$REF" | tar -x -C "$SRC"
elif [[ $SOURCE == *.tar.gz || $SOURCE == *.tgz ]]; then
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xzf "$SOURCE" -C "$SRC" --strip-components=1
else
    rm -rf "$SRC"
    log "cloning $SOURCE at $REF"
    git clone --depth 1 --branch "$REF" "$SOURCE" "$SRC" >&2
fi
[[ -f $SRC/CMakeLists.txt ]] || die "$SRC has no CMakeLists.txt: not a coturn source tree"

log "building $SRC in $DEST/out"
mkdir -p "$DEST/out"
cmake -S "$SRC" -B "$DEST/out" -DWITH_MYSQL=OFF -DCMAKE_BUILD_TYPE=Release >&2
make -C "$DEST/out" -j"$JOBS" turnserver >&2
BIN=$DEST/out/bin/turnserver
[[ -x $BIN ]] || die "no turnserver after the build"
log "built $("$BIN" --version 2>/dev/null | head -n 1)"
echo "$BIN"
