#!/usr/bin/env bash
# ternd vs coturn benchmark. See benches/README.md.
#
#   benches/run.sh                      # ROUNDS=5 DURATION=5
#   ROUNDS=3 DURATION=3 benches/run.sh
#
# Prints, per figure, the median over ROUNDS rounds for ternd and coturn and
# the ternd/coturn ratio, plus every round's raw numbers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ---- knobs ---------------------------------------------------------------
ROUNDS=${ROUNDS:-5}             # rounds per server (the median is reported)
DURATION=${DURATION:-5}         # measured seconds per run (after WARMUP)
WARMUP=${WARMUP:-1}             # unmeasured seconds of load before each run
SHARDS=${SHARDS:-1}             # ternd server.shards; coturn gets --relay-threads=SHARDS
SOCKETS=${SOCKETS:-16}          # load generator: client UDP sockets
WINDOW=${WINDOW:-32}            # load generator: requests in flight per socket
BATCH=${BATCH:-32}              # load generator: datagrams per sendmmsg/recvmmsg
SERVER_CPUS=${SERVER_CPUS:-0}   # taskset CPU list for the server under test
LOAD_CPUS=${LOAD_CPUS:-1}       # taskset CPU list for the load generator
CEILING=${CEILING:-1}           # 1: also measure the bare ceiling (trivial responder)
SERVERS=${SERVERS:-"ternd coturn"}
TERND_ARGS=${TERND_ARGS:-}      # extra ternd arguments, e.g. "--set udp.recv_buffer_bytes=4194304"
COTURN_ARGS=${COTURN_ARGS:-}    # extra turnserver arguments
SKIP_BUILD=${SKIP_BUILD:-0}     # 1: use already built binaries
OTHER_MAX=${OTHER_MAX:-10}      # % of a core used by other processes above which a run is disturbed
RETRIES=${RETRIES:-2}           # re-runs of a disturbed run

TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
TERND=$TARGET/release/ternd
LOADGEN=$TARGET/release/ternd-loadgen

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

# ---- cleanup: only processes this script started, by PID -----------------
SERVER_PID=
WORK=$(mktemp -d /tmp/ternd-bench.XXXXXX)
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        # Bounded wait; escalate to SIGKILL if it does not exit within 5 s.
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites and builds --------------------------------------------
command -v taskset >/dev/null || die "taskset not found (util-linux)"
if [[ " $SERVERS " == *" coturn "* ]] && ! command -v turnserver >/dev/null; then
    log "turnserver not found; installing coturn"
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update && $SUDO apt-get install -y coturn
fi
if [[ $SKIP_BUILD != 1 ]]; then
    log "building ternd (release, target dir $TARGET)"
    CARGO_TARGET_DIR=$TARGET cargo build --release --bin ternd >&2
    log "building load generator"
    (cd benches/loadgen && CARGO_TARGET_DIR=$TARGET cargo build --release >&2)
fi
[[ -x $TERND ]] || die "$TERND missing"
[[ -x $LOADGEN ]] || die "$LOADGEN missing"

# ---- servers ---------------------------------------------------------------
# start_server KIND PORT: start KIND on 127.0.0.1:PORT (UDP only) pinned to
# SERVER_CPUS, and wait until it answers a Binding request (at most 10 s).
start_server() {
    local kind=$1 port=$2 out=$WORK/$1.log
    case $kind in
    ternd)
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" "$TERND" --set "listen.udp=127.0.0.1:$port" --set listen.tcp= \
            --set "server.shards=$SHARDS" --log-level warn $TERND_ARGS >"$out" 2>&1 &
        ;;
    coturn)
        # STUN only, no auth needed for Binding; UDP only; SHARDS relay threads.
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" turnserver -n --listening-ip=127.0.0.1 --listening-port="$port" \
            --no-tcp --no-tls --no-dtls --relay-threads="$SHARDS" --no-cli --stun-only \
            --log-file=stdout --simple-log --pidfile="$WORK/turnserver.pid" \
            --userdb="$WORK/turndb" $COTURN_ARGS >"$out" 2>&1 &
        ;;
    ceiling)
        taskset -c "$SERVER_CPUS" "$LOADGEN" reflect --listen "127.0.0.1:$port" --duration 3600 >"$out" 2>&1 &
        ;;
    *) die "unknown server $kind" ;;
    esac
    SERVER_PID=$!
    if ! "$LOADGEN" probe --server "127.0.0.1:$port" --timeout 10; then
        tail -n 20 "$out" >&2 || true
        die "$kind did not answer on 127.0.0.1:$port within 10 s"
    fi
}

# measure KIND: one run; leaves the generator's result line in $LINE.
# (Not called in a $(...) subshell, so the EXIT trap always knows SERVER_PID.)
measure() {
    local kind=$1 port
    port=$("$LOADGEN" free-port)
    start_server "$kind" "$port"
    taskset -c "$LOAD_CPUS" "$LOADGEN" binding --server "127.0.0.1:$port" \
        --duration "$DURATION" --warmup "$WARMUP" --sockets "$SOCKETS" --window "$WINDOW" \
        --batch "$BATCH" --server-pid "$SERVER_PID" >"$WORK/line" || die "load generator failed against $kind"
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/$kind.log" >&2; die "$kind exited during the run"; }
    stop_server
    LINE=$(<"$WORK/line")
}

field() { # field NAME LINE
    local kv
    for kv in $2; do [[ $kv == "$1="* ]] && { echo "${kv#*=}"; return; }; done
    echo "?"
}

median() { # median of numbers on stdin
    sort -n | awk '{a[NR]=$1} END {if (NR==0) print "?"; else if (NR%2) printf "%.0f\n", a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# ---- rounds ---------------------------------------------------------------
# A run is "disturbed" when the server core and the load core were busy with
# something other than the server and the load generator (another process on
# a shared machine) for more than OTHER_MAX percent of one core in total. A
# disturbed run is retried up to RETRIES times; medians use undisturbed runs
# when a server has any.
single_cpu() { [[ $1 =~ ^[0-9]+$ ]]; }
kinds=$SERVERS
[[ $CEILING == 1 ]] && kinds="$kinds ceiling"
log "rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s shards=$SHARDS sockets=$SOCKETS window=$WINDOW batch=$BATCH server_cpus=$SERVER_CPUS load_cpus=$LOAD_CPUS"
declare -A CLEAN ALL
raw=()
for r in $(seq "$ROUNDS"); do
    # Alternate the order each round so slow drift does not favour one server.
    order=$kinds
    (( r % 2 == 0 )) && order=$(echo "$kinds" | tr ' ' '\n' | tac | tr '\n' ' ')
    for kind in $order; do
        for attempt in $(seq 0 "$RETRIES"); do
            measure "$kind"
            line=$LINE
            echo "$line" >>"$WORK/raw.txt"
            rate=$(field answered_per_sec "$line")
            sp=$(field server_cpu_pct "$line") gp=$(field gen_cpu_pct "$line")
            srv=? gen=? other=? disturbed=0
            if single_cpu "$SERVER_CPUS" && single_cpu "$LOAD_CPUS" && [[ $SERVER_CPUS != "$LOAD_CPUS" ]]; then
                srv=$(field "cpu${SERVER_CPUS}_busy_pct" "$line")
                gen=$(field "cpu${LOAD_CPUS}_busy_pct" "$line")
                # Busy time on the two cores not charged to either process.
                other=$(awk -v a="$srv" -v b="$gen" -v c="$sp" -v d="$gp" 'BEGIN { v = a + b - c - d; printf "%.0f", (v < 0 ? 0 : v) }')
                (( other > OTHER_MAX )) && disturbed=1
            fi
            note=
            (( disturbed )) && note="  DISTURBED"
            raw+=("$(printf 'round %d  %-8s %9s req/s  cores busy %5s%% / %5s%%  server %5s%%  loadgen %5s%%  other %3s%%  timeouts %s  rcvbuf-drops %s%s' \
                "$r" "$kind" "$rate" "$srv" "$gen" "$sp" "$gp" "$other" \
                "$(field timeouts "$line")" "$(field udp_rcvbuf_errors "$line")" "$note")")
            log "${raw[-1]}"
            (( disturbed )) && (( attempt < RETRIES )) && { log "other load on the cores: retrying"; continue; }
            ALL[$kind]+="$rate "
            (( disturbed )) || CLEAN[$kind]+="$rate "
            break
        done
    done
done

# ---- report ---------------------------------------------------------------
# med KIND: median over undisturbed runs, or over all runs marked with '*'.
med() {
    if [[ -n ${CLEAN[$1]:-} ]]; then
        echo "${CLEAN[$1]}" | tr ' ' '\n' | awk 'NF' | median
    elif [[ -n ${ALL[$1]:-} ]]; then
        echo "$(echo "${ALL[$1]}" | tr ' ' '\n' | awk 'NF' | median)*"
    else
        echo "?"
    fi
}
ratio() { awk -v a="${1%\*}" -v b="${2%\*}" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a/b; else print "?" }'; }
t=$(med ternd)
c=$(med coturn)
echo
echo "ternd vs coturn, UDP on 127.0.0.1, server on CPU $SERVER_CPUS, load on CPU $LOAD_CPUS, $ROUNDS rounds x ${DURATION}s"
printf '%-36s %16s %17s %7s\n' "figure" "ternd (median)" "coturn (median)" "ratio"
printf '%-36s %16s %17s %7s\n' "binding requests/s (UDP, $SHARDS shard$([[ $SHARDS == 1 ]] || echo s))" "$t" "$c" "$(ratio "$t" "$c")"
if [[ $CEILING == 1 ]]; then
    printf '%-36s %16s   (trivial batched responder: the most this load generator and kernel can show)\n' \
        "bare ceiling requests/s" "$(med ceiling)"
fi
[[ "$t$c" == *"*"* ]] && echo "* every run of this server was disturbed by other load on the machine: rerun when it is idle"
echo
echo "raw rounds (cores busy = server core / load core, all processes; other = busy time charged to neither; other > $OTHER_MAX% = DISTURBED):"
printf '  %s\n' "${raw[@]}"
echo "load: $SOCKETS sockets x $WINDOW in flight, batch $BATCH, 200 ms loss timeout; figures are answered Binding requests per second"
