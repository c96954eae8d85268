#!/usr/bin/env bash
# ternd vs coturn benchmark. See benches/README.md. (The XDP fast path on a
# veth namespace lab, five columns: benches/fastpath.sh.)
#
#   benches/run.sh                      # every suite, ROUNDS=5 DURATION=5
#   ROUNDS=3 DURATION=3 benches/run.sh
#   SUITE=relay,alloc benches/run.sh    # some suites only
#
# Prints, per figure, the median over ROUNDS rounds for ternd and coturn and
# the ternd/coturn ratio, plus every round's raw numbers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ---- knobs ---------------------------------------------------------------
SUITE=${SUITE:-binding,relay,latency,cpu,alloc,memory,uclient} # comma-separated suites to run
ROUNDS=${ROUNDS:-5}             # rounds per server (the median is reported)
DURATION=${DURATION:-5}         # measured seconds per run (after WARMUP)
WARMUP=${WARMUP:-1}             # unmeasured seconds of load before each run
SHARDS=${SHARDS:-1}             # ternd server.shards; coturn gets --relay-threads=SHARDS
SOCKETS=${SOCKETS:-16}          # binding: client UDP sockets (first shape)
WINDOW=${WINDOW:-32}            # binding: requests in flight per socket (first shape)
# binding shapes SOCKETSxWINDOW: a few clients with many requests in flight
# (replies to one client can leave as one GSO message), and many clients with
# one request each (every reply to a different address: no merging possible).
BINDING_SHAPES=${BINDING_SHAPES:-"${SOCKETS}x${WINDOW} 512x1"}
BATCH=${BATCH:-32}              # load generator: datagrams per sendmmsg/recvmmsg
SERVER_CPUS=${SERVER_CPUS:-0}   # taskset CPU list for the server under test
LOAD_CPUS=${LOAD_CPUS:-1}       # taskset CPU list for the load generator
CEILING=${CEILING:-1}           # 1: also measure the bare ceilings (no server / trivial server)
SERVERS=${SERVERS:-"ternd coturn"}
TERND_ARGS=${TERND_ARGS:-}      # extra ternd arguments, e.g. "--set udp.recv_buffer_bytes=4194304"
COTURN_ARGS=${COTURN_ARGS:-}    # extra turnserver arguments
COTURN_BIN=${COTURN_BIN:-turnserver} # the coturn to compare with (any build, e.g. one built from source)
# The kernel fast path (issue 14): "xdp-generic" runs the whole benchmark in a
# private network namespace (its own loopback, forwarding on) with ternd's XDP
# program attached to that loopback; coturn runs there too, without it. The
# XDP work of loopback traffic is done in the sending process's softirq, so
# compare "cores busy" (both cores, all processes) rather than "server %".
TERND_FASTPATH=${TERND_FASTPATH:-off}
SKIP_BUILD=${SKIP_BUILD:-0}     # 1: use already built binaries
OTHER_MAX=${OTHER_MAX:-10}      # % of a core used by other processes above which a run is disturbed
RETRIES=${RETRIES:-2}           # re-runs of a disturbed run
QUIET_WAIT=${QUIET_WAIT:-120}   # before each run, wait up to this many seconds for the two cores to be idle
# relay suite
RELAY_ALLOCS=${RELAY_ALLOCS:-"1 100 1000"}  # concurrent allocations per figure
RELAY_PAYLOADS=${RELAY_PAYLOADS:-"100 1200"} # ChannelData payload bytes per figure
RELAY_INFLIGHT=${RELAY_INFLIGHT:-256}       # messages in flight in total (closed loop)
RELAY_RATE=${RELAY_RATE:-0}                 # offered messages/s; 0 = as fast as the window allows
RELAY_PEERS=${RELAY_PEERS:-4}               # echo peer sockets
LATENCY=${LATENCY:-"100:100:50000"}      # latency suite: allocations:payload:offered msgs/s
CPU_LOAD=${CPU_LOAD:-"100:1000:100000"}  # cpu suite: allocations:payload:offered msgs/s (issue 7's reference load)
RELAY_PORT_MIN=${RELAY_PORT_MIN:-20000}     # relay port range of both servers (keep it below
RELAY_PORT_MAX=${RELAY_PORT_MAX:-32000}     # the kernel's ephemeral range, 32768-60999)
# alloc and memory suites
ALLOC_CLIENTS=${ALLOC_CLIENTS:-32}          # parallel Allocate/Refresh(0) clients
MEM_ALLOCS=${MEM_ALLOCS:-10000}             # idle allocations for the memory figure
# uclient suite (coturn's own load generator)
UCLIENT_ARGS=${UCLIENT_ARGS:-"-n 1000 -m 100 -l 100"}

TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
TERND=$TARGET/release/ternd
LOADGEN=$TARGET/release/ternd-loadgen
TURN_USER=bench TURN_PASS=benchpass TURN_REALM=bench

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# With the fast path, run this same script inside a fresh namespace and
# delete it afterwards (its loopback, its XDP program, nothing left behind).
if [[ $TERND_FASTPATH != off && -z ${TERND_BENCH_NETNS:-} ]]; then
    [[ $(id -u) -eq 0 ]] || die "TERND_FASTPATH=$TERND_FASTPATH needs root (namespaces, XDP)"
    ns=ternd-bench-$$
    ip netns add "$ns" || die "cannot create namespace $ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv4.conf.lo.forwarding=1
    rc=0
    ip netns exec "$ns" env TERND_BENCH_NETNS="$ns" bash "${BASH_SOURCE[0]}" "$@" || rc=$?
    ip netns del "$ns"
    exit "$rc"
fi
FASTPATH_ARGS=()
[[ $TERND_FASTPATH != off ]] && FASTPATH_ARGS=(--set "fastpath.mode=$TERND_FASTPATH" --set fastpath.interfaces=lo)
has_suite() { [[ ",$SUITE," == *",$1,"* ]]; }

# ---- cleanup: only processes this script started, by PID -----------------
SERVER_PID=
AUX_PIDS=()                     # echo peer, hold client: killed by PID on exit
WORK=$(mktemp -d /tmp/ternd-bench.XXXXXX)
stop_server() { kill_pid "$SERVER_PID"; SERVER_PID=; }
stop_aux() {
    local p
    for p in "${AUX_PIDS[@]}"; do kill_pid "$p"; done
    AUX_PIDS=()
}
cleanup() { stop_aux; stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites and builds --------------------------------------------
command -v taskset >/dev/null || die "taskset not found (util-linux)"
if [[ " $SERVERS " == *" coturn "* ]] || has_suite uclient; then
    if ! command -v "$COTURN_BIN" >/dev/null || ! command -v turnutils_uclient >/dev/null; then
        log "turnserver / turnutils_uclient not found; installing coturn"
        SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
        $SUDO apt-get update && $SUDO apt-get install -y coturn
    fi
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
# start_server KIND PORT [MODE]: start KIND on 127.0.0.1:PORT (UDP only) pinned
# to SERVER_CPUS, and wait until it answers a Binding request (at most 10 s).
# MODE stun (default): STUN only, as the binding figure has always run.
# MODE turn / uclient: TURN with long-term credentials (user bench, realm
# bench), relays on 127.0.0.1, loopback peers allowed, no quotas.
start_server() {
    local kind=$1 port=$2 mode=${3:-stun} out=$WORK/$1.log
    rm -f "$WORK/turnserver.pid" "$WORK/turndb"
    case $kind/$mode in
    ternd/stun)
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" "$TERND" --set "listen.udp=127.0.0.1:$port" --set listen.tcp= --set http.listen= \
            --set "server.shards=$SHARDS" "${FASTPATH_ARGS[@]}" --log-level warn $TERND_ARGS >"$out" 2>&1 &
        ;;
    ternd/*)
        local legacy=()
        # coturn's turnutils_uclient picks channel numbers above 0x4FFF (RFC 5766 range).
        [[ $mode == uclient ]] && legacy=(--set turn.legacy_channel_numbers=true)
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" "$TERND" --set "listen.udp=127.0.0.1:$port" --set listen.tcp= --set http.listen= \
            --set "server.shards=$SHARDS" --set relay.ipv4=127.0.0.1 \
            --set "relay.port_min=$RELAY_PORT_MIN" --set "relay.port_max=$RELAY_PORT_MAX" \
            --set peers.allow=127.0.0.0/8 --set "turn.users.$TURN_USER=$TURN_PASS" \
            --set "turn.realm=$TURN_REALM" --set turn.max_allocations=1000000 \
            --set turn.max_allocations_per_user=1000000 --set turn.max_allocations_per_ip=1000000 --set turn.unauthenticated_rate=0 --set turn.unauthenticated_rate_total=0 \
            "${legacy[@]}" "${FASTPATH_ARGS[@]}" --log-level warn $TERND_ARGS >"$out" 2>&1 &
        ;;
    coturn/stun)
        # STUN only, no auth needed for Binding; UDP only; SHARDS relay threads.
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" "$COTURN_BIN" -n --listening-ip=127.0.0.1 --listening-port="$port" \
            --no-tcp --no-tls --no-dtls --relay-threads="$SHARDS" --no-cli --stun-only \
            --log-file=stdout --simple-log --pidfile="$WORK/turnserver.pid" \
            --userdb="$WORK/turndb" $COTURN_ARGS >"$out" 2>&1 &
        ;;
    coturn/*)
        # Quotas 0 = unlimited, no bandwidth cap; relay-ip pins relays to loopback.
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPUS" "$COTURN_BIN" -n --listening-ip=127.0.0.1 --listening-port="$port" \
            --relay-ip=127.0.0.1 --min-port="$RELAY_PORT_MIN" --max-port="$RELAY_PORT_MAX" \
            --no-tcp --no-tls --no-dtls --relay-threads="$SHARDS" --lt-cred-mech \
            --user="$TURN_USER:$TURN_PASS" --realm="$TURN_REALM" --allow-loopback-peers \
            --total-quota=0 --user-quota=0 --max-bps=0 --no-cli \
            --log-file=stdout --simple-log --pidfile="$WORK/turnserver.pid" \
            --userdb="$WORK/turndb" $COTURN_ARGS >"$out" 2>&1 &
        ;;
    ceiling/*)
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

check_alive() { # check_alive KIND: the server must have survived the run
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/$1.log" >&2; die "$1 exited during the run"; }
}

# Every measure_* function runs one measurement of one figure against KIND
# and leaves a `key=value` result line in $LINE, with `value=` the figure.
# (Not called in a $(...) subshell, so the EXIT trap always knows the PIDs.)

measure_binding() { # KIND SOCKETS WINDOW
    local kind=$1 sockets=${2:-$SOCKETS} window=${3:-$WINDOW} port
    port=$("$LOADGEN" free-port)
    start_server "$kind" "$port" stun
    taskset -c "$LOAD_CPUS" timeout $((DURATION + WARMUP + 60)) "$LOADGEN" binding --server "127.0.0.1:$port" \
        --duration "$DURATION" --warmup "$WARMUP" --sockets "$sockets" --window "$window" \
        --batch "$BATCH" --server-pid "$SERVER_PID" >"$WORK/line" || die "load generator failed against $kind"
    check_alive "$kind"
    stop_server
    LINE="value=$(field answered_per_sec "$(<"$WORK/line")") $(<"$WORK/line")"
}

measure_relay() { # KIND ALLOCATIONS PAYLOAD [RATE]; KIND ceiling = no server at all
    local kind=$1 allocs=$2 payload=$3 rate=${4:-$RELAY_RATE} port target pid=()
    if [[ $kind == ceiling ]]; then
        target=none
    else
        port=$("$LOADGEN" free-port)
        start_server "$kind" "$port" turn
        target=127.0.0.1:$port
        pid=(--server-pid "$SERVER_PID")
    fi
    taskset -c "$LOAD_CPUS" timeout $((DURATION + WARMUP + 120)) "$LOADGEN" relay --server "$target" \
        --allocations "$allocs" --payload "$payload" --inflight "$RELAY_INFLIGHT" --rate "$rate" \
        --peers "$RELAY_PEERS" --batch "$BATCH" --duration "$DURATION" --warmup "$WARMUP" \
        --user "$TURN_USER" --password "$TURN_PASS" "${pid[@]}" >"$WORK/line" \
        || { [[ $kind == ceiling ]] || tail -n 20 "$WORK/$kind.log" >&2; die "relay load generator failed against $kind"; }
    [[ $kind == ceiling ]] || { check_alive "$kind"; stop_server; }
    local v=echoed_per_sec
    [[ -n ${4:-} ]] && v=rtt_p99_us
    LINE="value=$(field $v "$(<"$WORK/line")") $(<"$WORK/line")"
}

measure_alloc() { # KIND
    local kind=$1 port
    port=$("$LOADGEN" free-port)
    start_server "$kind" "$port" turn
    taskset -c "$LOAD_CPUS" timeout $((DURATION + WARMUP + 60)) "$LOADGEN" alloc --server "127.0.0.1:$port" \
        --clients "$ALLOC_CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
        --user "$TURN_USER" --password "$TURN_PASS" --server-pid "$SERVER_PID" >"$WORK/line" \
        || die "alloc load generator failed against $kind"
    check_alive "$kind"
    stop_server
    LINE="value=$(field allocs_per_sec "$(<"$WORK/line")") $(<"$WORK/line")"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

measure_memory() { # KIND: RSS growth for MEM_ALLOCS idle allocations, per 1000
    local kind=$1 port before after ready= hold
    port=$("$LOADGEN" free-port)
    start_server "$kind" "$port" turn
    sleep 0.5
    before=$(rss_kib "$SERVER_PID")
    : >"$WORK/hold"
    taskset -c "$LOAD_CPUS" "$LOADGEN" hold --server "127.0.0.1:$port" --allocations "$MEM_ALLOCS" \
        --setup-timeout 120 --hold 150 --user "$TURN_USER" --password "$TURN_PASS" >"$WORK/hold" 2>&1 &
    hold=$!
    AUX_PIDS+=("$hold")
    for _ in $(seq 1300); do # at most ~130 s
        grep -q '^ready' "$WORK/hold" && { ready=1; break; }
        kill -0 "$hold" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $ready ]] || { cat "$WORK/hold" >&2; die "hold did not create the allocations on $kind"; }
    sleep 1 # let the server finish any deferred work
    after=$(rss_kib "$SERVER_PID")
    check_alive "$kind"
    stop_aux
    stop_server
    local r
    r=$(grep '^ready' "$WORK/hold")
    [[ $(field allocations "$r") == "$MEM_ALLOCS" ]] || log "warning: only $(field allocations "$r") of $MEM_ALLOCS allocations on $kind"
    LINE="value=$(awk -v a="$after" -v b="$before" -v n="$(field allocations "$r")" 'BEGIN { printf "%.0f", (n > 0 ? (a - b) * 1000 / n : 0) }') rss_before_kib=$before rss_after_kib=$after ${r#ready }"
}

proc_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat" 2>/dev/null || echo 0; }

measure_uclient() { # KIND: coturn's turnutils_uclient echo test; figure = server CPU ms
    local kind=$1 port pport t0 t1 ok= hz
    hz=$(getconf CLK_TCK)
    pport=$("$LOADGEN" free-port)
    taskset -c "$LOAD_CPUS" turnutils_peer -L 127.0.0.2 -p "$pport" >"$WORK/peer.log" 2>&1 &
    AUX_PIDS+=("$!")
    port=$("$LOADGEN" free-port)
    start_server "$kind" "$port" uclient
    for _ in 1 2 3; do # uclient gives up on its first error; retry a failed run
        t0=$(proc_ticks "$SERVER_PID")
        # shellcheck disable=SC2086
        if taskset -c "$LOAD_CPUS" timeout 300 turnutils_uclient $UCLIENT_ARGS -e 127.0.0.2 -r "$pport" \
            -u "$TURN_USER" -w "$TURN_PASS" -p "$port" 127.0.0.1 >"$WORK/uclient.log" 2>&1 \
            && grep -q 'Total transmit time' "$WORK/uclient.log"; then
            ok=1
            break
        fi
        log "turnutils_uclient failed against $kind: $(grep -m1 -i 'error' "$WORK/uclient.log" || tail -n 1 "$WORK/uclient.log"); retrying"
    done
    t1=$(proc_ticks "$SERVER_PID")
    check_alive "$kind"
    stop_server
    stop_aux
    [[ -n $ok ]] || die "turnutils_uclient failed 3 times against $kind"
    local num
    num() { grep -oE "$1[^0-9]*[0-9.]+" "$WORK/uclient.log" | tail -n 1 | grep -oE '[0-9.]+$' || echo '?'; }
    LINE="value=$(( (t1 - t0) * 1000 / hz )) sent=$(num 'start_mclient: tot_send_msgs=') recv=$(num 'tot_recv_msgs=') \
lost=$(num 'Total lost packets') rtt_ms=$(num 'Average round trip delay') transmit_s=$(num 'Total transmit time is')"
}

# ---- figures ---------------------------------------------------------------
# A figure id names its suite and parameters: binding, relay:A:P,
# latency:A:P:RATE, alloc, memory, uclient. Each figure is measured for the
# kinds kinds_of lists.
FIGS=()
if has_suite binding; then
    for shape in $BINDING_SHAPES; do FIGS+=("binding:${shape%x*}:${shape#*x}"); done
fi
if has_suite relay; then
    for a in $RELAY_ALLOCS; do for p in $RELAY_PAYLOADS; do FIGS+=("relay:$a:$p"); done; done
fi
has_suite latency && FIGS+=("latency:$LATENCY")
has_suite cpu && FIGS+=("cpu:$CPU_LOAD")
has_suite alloc && FIGS+=(alloc)
has_suite memory && FIGS+=(memory)
has_suite uclient && FIGS+=(uclient)
(( ${#FIGS[@]} )) || die "SUITE=$SUITE selects nothing (binding, relay, latency, cpu, alloc, memory, uclient)"

kinds_of() { # kinds_of FIG ROUND
    local k=$SERVERS
    case $1 in
    binding:*) [[ $CEILING == 1 ]] && k="$k ceiling" ;;
    # The relay ceiling needs no server; one round shows it well enough.
    relay:*) [[ $CEILING == 1 && $2 == 1 ]] && k="$k ceiling" ;;
    esac
    echo "$k"
}

# ---- rounds ---------------------------------------------------------------
# A run is "disturbed" when the server core and the load core were busy with
# something other than the server and the load generator (another process on
# a shared machine) for more than OTHER_MAX percent of one core in total. A
# disturbed run is retried up to RETRIES times; medians use undisturbed runs
# when a server has any. (memory and uclient runs are not checked: RSS does
# not depend on CPU contention, and uclient's figure is CPU time, not a rate.)
log "suites=$SUITE rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s shards=$SHARDS server_cpus=$SERVER_CPUS load_cpus=$LOAD_CPUS"
declare -A CLEAN ALL RAW EXTRA_CLEAN EXTRA_ALL
for r in $(seq "$ROUNDS"); do
    for fig in "${FIGS[@]}"; do
        kinds=$(kinds_of "$fig" "$r")
        # Alternate the order each round so slow drift does not favour one server.
        order=$kinds
        (( r % 2 == 0 )) && order=$(echo "$kinds" | tr ' ' '\n' | tac | tr '\n' ' ')
        for kind in $order; do
            for attempt in $(seq 0 "$RETRIES"); do
                wait_quiet
                case $fig in
                binding:*) IFS=: read -r _ a w <<<"$fig"; measure_binding "$kind" "$a" "$w" ;;
                relay:*) IFS=: read -r _ a p <<<"$fig"; measure_relay "$kind" "$a" "$p" ;;
                latency:*) IFS=: read -r _ a p q <<<"$fig"; measure_relay "$kind" "$a" "$p" "$q" ;;
                cpu:*)
                    IFS=: read -r _ a p q <<<"$fig"
                    measure_relay "$kind" "$a" "$p" "$q"
                    # Server CPU per echoed message (4 datagrams through the server),
                    # and the part of it spent in the kernel (system time).
                    per_msg() { awk -v c="$1" -v e="$(field echoed_per_sec "$LINE")" \
                        'BEGIN { if (e + 0 > 0 && c != "?") printf "%.2f", c * 1e4 / e; else print "?" }'; }
                    LINE="value=$(per_msg "$(field server_cpu_pct "$LINE")") kernel_us=$(per_msg "$(field server_sys_pct "$LINE")") ${LINE#value=* }" ;;
                alloc) measure_alloc "$kind" ;;
                memory) measure_memory "$kind" ;;
                uclient) measure_uclient "$kind" ;;
                esac
                line=$LINE
                echo "$fig $kind $line" >>"$WORK/raw.txt"
                value=$(field value "$line")
                sp=$(field server_cpu_pct "$line") gp=$(field gen_cpu_pct "$line")
                [[ $sp == "?" ]] && sp=0
                srv=? gen=? other=? disturbed=0
                if [[ $gp != "?" ]] && single_cpu "$SERVER_CPUS" && single_cpu "$LOAD_CPUS" && [[ $SERVER_CPUS != "$LOAD_CPUS" ]]; then
                    srv=$(field "cpu${SERVER_CPUS}_busy_pct" "$line")
                    gen=$(field "cpu${LOAD_CPUS}_busy_pct" "$line")
                    # Busy time on the two cores not charged to either process.
                    other=$(awk -v a="$srv" -v b="$gen" -v c="$sp" -v d="$gp" 'BEGIN { v = a + b - c - d; printf "%.0f", (v < 0 ? 0 : v) }')
                    (( other > OTHER_MAX )) && disturbed=1
                fi
                note=
                (( disturbed )) && note="  DISTURBED"
                case $fig in
                binding:*)
                    row=$(printf '%9s req/s  cores busy %5s%% / %5s%%  server %5s%%  loadgen %5s%%  other %3s%%  timeouts %s  rcvbuf-drops %s' \
                        "$value" "$srv" "$gen" "$sp" "$gp" "$other" "$(field timeouts "$line")" "$(field udp_rcvbuf_errors "$line")") ;;
                cpu:*)
                    row=$(printf '%6s us/msg (kernel %s)  %8s pkt/s  loss %6s%%  rtt p50/p99 %s/%s us  cores busy %5s%% / %5s%%  server %5s%%  loadgen %5s%%  other %3s%%' \
                        "$value" "$(field kernel_us "$line")" "$(field echoed_per_sec "$line")" "$(field loss_pct "$line")" \
                        "$(field rtt_p50_us "$line")" "$(field rtt_p99_us "$line")" "$srv" "$gen" "$sp" "$gp" "$other") ;;
                relay:* | latency:*)
                    row=$(printf '%8s pkt/s %7s Mbit/s  loss %6s%%  rtt p50/p99 %s/%s us  cores busy %5s%% / %5s%%  server %5s%%  loadgen %5s%%  other %3s%%  rcvbuf-drops %s  setup %ss' \
                        "$(field echoed_per_sec "$line")" "$(field mbit_per_sec "$line")" "$(field loss_pct "$line")" "$(field rtt_p50_us "$line")" \
                        "$(field rtt_p99_us "$line")" "$srv" "$gen" "$sp" "$gp" "$other" "$(field udp_rcvbuf_errors "$line")" \
                        "$(field setup_secs "$line")") ;;
                alloc)
                    row=$(printf '%7s allocs/s  %7s req/s  challenges %s  errors %s (last %s)  retransmits %s  cores busy %5s%% / %5s%%  server %5s%%  loadgen %5s%%  other %3s%%' \
                        "$value" "$(field requests_per_sec "$line")" "$(field challenges "$line")" "$(field errors "$line")" \
                        "$(field last_error "$line")" "$(field retransmits "$line")" "$srv" "$gen" "$sp" "$gp" "$other") ;;
                memory)
                    row=$(printf '%6s KiB per 1000  RSS %s -> %s KiB  allocations %s  setup %ss (%s allocs/s)' \
                        "$value" "$(field rss_before_kib "$line")" "$(field rss_after_kib "$line")" \
                        "$(field allocations "$line")" "$(field setup_secs "$line")" "$(field setup_allocs_per_sec "$line")") ;;
                uclient)
                    row=$(printf '%6s ms server CPU  sent %s  received %s  lost %s  avg rtt %s ms  transmit %s s' \
                        "$value" "$(field sent "$line")" "$(field recv "$line")" "$(field lost "$line")" \
                        "$(field rtt_ms "$line")" "$(field transmit_s "$line")") ;;
                esac
                RAW[$fig]+="$(printf 'round %d  %-8s %s%s' "$r" "$kind" "$row" "$note")"$'\n'
                log "$fig: round $r $kind $row$note"
                (( disturbed )) && (( attempt < RETRIES )) && { log "other load on the cores: retrying"; continue; }
                ALL[$fig|$kind]+="$value "
                (( disturbed )) || CLEAN[$fig|$kind]+="$value "
                # Secondary relay numbers, medians reported in the details table.
                if [[ $fig == relay:* || $fig == latency:* || $fig == cpu:* ]]; then
                    for x in mbit_per_sec loss_pct rtt_p50_us rtt_p99_us kernel_us; do
                        EXTRA_ALL[$fig|$kind|$x]+="$(field "$x" "$line") "
                        (( disturbed )) || EXTRA_CLEAN[$fig|$kind|$x]+="$(field "$x" "$line") "
                    done
                fi
                break
            done
        done
    done
done

# ---- report ---------------------------------------------------------------
# med KEY: median over undisturbed runs, or over all runs marked with '*'.
med() {
    local d=0
    [[ $1 == cpu:* ]] && d=2 # microseconds per message
    if [[ -n ${CLEAN[$1]:-} ]]; then
        echo "${CLEAN[$1]}" | tr ' ' '\n' | awk 'NF' | DEC=$d median
    elif [[ -n ${ALL[$1]:-} ]]; then
        echo "$(echo "${ALL[$1]}" | tr ' ' '\n' | awk 'NF' | DEC=$d median)*"
    else
        echo "-"
    fi
}
xmed() { # xmed KEY DECIMALS
    local v
    if [[ -n ${EXTRA_CLEAN[$1]:-} ]]; then v=${EXTRA_CLEAN[$1]}; else v=${EXTRA_ALL[$1]:-}; fi
    [[ -n $v ]] || { echo "-"; return; }
    echo "$v" | tr ' ' '\n' | awk 'NF && $1 != "?"' | DEC=$2 median
}
ratio() { awk -v a="${1%\*}" -v b="${2%\*}" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a/b; else print "-" }'; }
LOSSES=()
row() { # row LABEL FIG BETTER(higher|lower) [NOTE]
    local t c q verdict=""
    t=$(med "$2|ternd")
    c=$(med "$2|coturn")
    q=$(ratio "$t" "$c")
    if [[ $q != "-" ]]; then
        if [[ $3 == higher ]]; then
            awk -v q="$q" 'BEGIN { exit !(q < 1) }' && { verdict=" <- ternd behind"; LOSSES+=("$1"); }
        else
            awk -v q="$q" 'BEGIN { exit !(q > 1) }' && { verdict=" <- ternd behind"; LOSSES+=("$1"); }
        fi
    fi
    printf '%-46s %14s %15s %7s  %-6s %s%s\n' "$1" "$t" "$c" "$q" "$3" "${4:-}" "$verdict"
}
mbit() { # mbit PKTS PAYLOAD
    awk -v v="${1%\*}" -v p="$2" -v s="${1//[^*]/}" 'BEGIN { if (v+0 > 0) printf "%.1f%s", v * p * 8 / 1e6, s; else print "-" }'
}

coturn_version=$("$COTURN_BIN" --version 2>/dev/null | head -n 1 || true)
echo
echo "ternd: $("$TERND" --version 2>/dev/null | head -n 1), fast path $TERND_FASTPATH${TERND_BENCH_NETNS:+ (namespace $TERND_BENCH_NETNS)}; coturn: $COTURN_BIN ${coturn_version:-(version unknown)}"
echo "ternd vs coturn, UDP on 127.0.0.1, server on CPU $SERVER_CPUS, load on CPU $LOAD_CPUS, $ROUNDS rounds x ${DURATION}s, $SHARDS shard(s)/relay thread(s)"
printf '%-46s %14s %15s %7s  %-6s %s\n' "figure" "ternd (median)" "coturn (median)" "ratio" "better" "notes"
for fig in "${FIGS[@]}"; do
    case $fig in
    binding:*)
        IFS=: read -r _ a w <<<"$fig"
        row "$(printf 'binding requests/s (%s sockets x %s)' "$a" "$w")" "$fig" higher \
            "$([[ $CEILING == 1 ]] && echo "bare ceiling $(med "$fig|ceiling")/s (trivial responder)")" ;;
    relay:*)
        IFS=: read -r _ a p <<<"$fig"
        label=$(printf 'relay %4s alloc x %4s B: echoed pkt/s' "$a" "$p")
        row "$label" "$fig" higher "$([[ $CEILING == 1 ]] && echo "bare ceiling $(med "$fig|ceiling")/s (no relay)")"
        t=$(med "$fig|ternd") c=$(med "$fig|coturn")
        printf '%-46s %14s %15s %7s  %-6s\n' "$(printf 'relay %4s alloc x %4s B: Mbit/s' "$a" "$p")" \
            "$(mbit "$t" "$p")" "$(mbit "$c" "$p")" "$(ratio "$t" "$c")" higher ;;
    latency:*)
        IFS=: read -r _ a p q <<<"$fig"
        row "$(printf 'relay %4s alloc x %4s B: RTT p99 us' "$a" "$p")" "$fig" lower "at $q pkt/s offered (p50 in the details)" ;;
    cpu:*)
        IFS=: read -r _ a p q <<<"$fig"
        row "$(printf 'relay %4s alloc x %4s B: server CPU us/msg' "$a" "$p")" "$fig" lower \
            "at $q pkt/s offered; in the kernel: ternd $(xmed "$fig|ternd|kernel_us" 2), coturn $(xmed "$fig|coturn|kernel_us" 2)" ;;
    alloc) row "allocations/s (Allocate+Refresh 0, $ALLOC_CLIENTS clients)" alloc higher "new 5-tuple per allocation" ;;
    memory) row "RSS KiB per 1000 idle allocations" memory lower "$MEM_ALLOCS allocations" ;;
    uclient) row "uclient: server CPU ms (${UCLIENT_ARGS// /})" uclient lower "load: coturn's turnutils_uclient + turnutils_peer" ;;
    esac
done
if [[ " ${FIGS[*]} " == *" relay:"* || " ${FIGS[*]} " == *" latency:"* || " ${FIGS[*]} " == *" cpu:"* ]]; then
    echo
    echo "relay details (medians): loss % and RTT p50/p99 in us, as seen by the load generator"
    printf '%-36s %10s %11s %20s %20s\n' "figure" "ternd loss" "coturn loss" "ternd rtt p50/p99" "coturn rtt p50/p99"
    for fig in "${FIGS[@]}"; do
        [[ $fig == relay:* || $fig == latency:* || $fig == cpu:* ]] || continue
        IFS=: read -r _ a p q <<<"$fig"
        printf '%-36s %10s %11s %20s %20s\n' "$(printf 'relay %4s alloc x %4s B%s' "$a" "$p" "${q:+ @$q/s}")" \
            "$(xmed "$fig|ternd|loss_pct" 3)" "$(xmed "$fig|coturn|loss_pct" 3)" \
            "$(xmed "$fig|ternd|rtt_p50_us" 0)/$(xmed "$fig|ternd|rtt_p99_us" 0)" \
            "$(xmed "$fig|coturn|rtt_p50_us" 0)/$(xmed "$fig|coturn|rtt_p99_us" 0)"
    done
fi
any_star=0
for k in "${!ALL[@]}"; do [[ -z ${CLEAN[$k]:-} ]] && any_star=1; done
(( any_star )) && echo "* every run of this server was disturbed by other load on the machine: rerun when it is idle"
if (( ${#LOSSES[@]} )); then
    echo "ternd behind coturn on: $(IFS=';'; echo "${LOSSES[*]}" | sed 's/  */ /g')"
else
    echo "ternd at or ahead of coturn on every figure"
fi
echo
echo "raw rounds (cores busy = server core / load core, all processes; other = busy time charged to neither; other > $OTHER_MAX% = DISTURBED):"
for fig in "${FIGS[@]}"; do
    echo " $fig"
    printf '%s' "${RAW[$fig]:-}" | sed 's/^/  /'
done
echo "load generators: ternd-loadgen for every figure except uclient (turnutils_uclient $UCLIENT_ARGS with turnutils_peer)"
has_suite binding && echo "binding: S sockets x W requests in flight each ($BINDING_SHAPES), batch $BATCH, each socket's requests of a pass sent as one UDP GSO message, 200 ms loss timeout; answered Binding requests per second, UDP, $SHARDS shard(s)"
has_suite latency && echo "latency: the relay load at a fixed offered rate (${LATENCY##*:} msgs/s, at most $RELAY_INFLIGHT in flight); figure = RTT p99"
has_suite cpu && echo "cpu: the relay load at a fixed offered rate (${CPU_LOAD##*:} msgs/s); figure = server CPU time (utime+stime over the measured interval) / echoed messages"
has_suite relay && echo "relay: $RELAY_INFLIGHT ChannelData messages in flight in total, round-robin over the allocations, $RELAY_PEERS echo peer sockets, batch $BATCH, 200 ms loss timeout, rate ${RELAY_RATE} (0 = closed loop); Mbit/s counts payload bits echoed"
has_suite alloc && echo "alloc: $ALLOC_CLIENTS clients, each Allocate then Refresh(LIFETIME=0) from a new 5-tuple per cycle, nonce reused while accepted; cycles per second"
has_suite memory && echo "memory: VmRSS of the server before and 1 s after $MEM_ALLOCS authenticated idle allocations (Allocate only), per 1000 allocations"
has_suite uclient && echo "uclient: server CPU time (utime+stime, $(getconf CLK_TCK) Hz ticks) for the whole uclient run, setup included; uclient paces its own sending"
exit 0
