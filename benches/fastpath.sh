#!/usr/bin/env bash
# ternd's kernel fast path (issue 14) against coturn, on a namespace lab.
# See benches/README.md ("Fast path comparison").
#
#   sudo COTURN_BIN=/tmp/coturn-build/out/bin/turnserver benches/fastpath.sh
#   sudo ROUNDS=1 DURATION=3 TOPOLOGIES=veth benches/fastpath.sh
#
# Topologies (each in namespaces of its own, deleted on exit):
#   veth      client ns -- veth -- server ns -- veth -- peer ns; the load
#             generator's clients in the client ns, its echo peers in the
#             peer ns, the server under test in the server ns.
#   loopback  one namespace, everything on its lo (generic XDP only).
# Columns: ternd userspace, ternd XDP native (veth only), ternd XDP generic,
# coturn as packaged (COTURN_DEBIAN_BIN), coturn built from source
# (COTURN_BIN, see benches/build-coturn.sh; column left out when unset) with
# its fastest standard-compliant flags (COTURN_FAST_ARGS).
#
# Figures, per topology, medians over ROUNDS: Binding requests/s from the
# userspace load generator and (veth) from an in-kernel closed loop, the XDP
# reflector of benches/reflector.sh; whole-machine CPU per Binding at a
# fixed offered rate and the capacity per core it implies; relay
# packets/s at saturation (closed loop) with loss and p50/p99 RTT; CPU per
# echoed message at a fixed offered rate, for the whole machine from
# /proc/stat (every CPU, softirq included: XDP work is charged to no
# process), its softirq part, and the server process alone; with ratios of
# each ternd column against the best coturn column.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ---- knobs ---------------------------------------------------------------
TOPOLOGIES=${TOPOLOGIES:-"veth loopback"}
COLUMNS=${COLUMNS:-"ternd ternd-xdp ternd-xdp-generic coturn-debian coturn"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}         # measured seconds per run
WARMUP=${WARMUP:-1}
SHARDS=${SHARDS:-1}             # ternd server.shards; coturn --relay-threads
SERVER_CPUS=${SERVER_CPUS:-0}   # taskset CPU list of the server
LOAD_CPUS=${LOAD_CPUS:-1}       # taskset CPU list of the load generator
BINDING_SHAPE=${BINDING_SHAPE:-16x32}        # sockets x requests in flight
# Binding requests one datagram per send, as real clients send them (true:
# one UDP GSO message per socket and pass, which loopback delivers unsplit
# to generic XDP, so the kernel passes it up instead of answering)
BINDING_GSO=${BINDING_GSO:-false}
REFLECT=${REFLECT:-1}                        # 1: Binding/s from the in-kernel reflector too (veth only)
REFLECT_SHAPE=${REFLECT_SHAPE:-64x4}         # reflector: seeding sockets x requests each (all in flight, closed loop; coturn did best at 256)
BINDING_RATE=${BINDING_RATE:-100000}         # Binding CPU figure: offered requests/s (0 skips it)
RELAY=${RELAY:-1}                            # 0 skips the relay figures (Binding figures only)
RELAY_SHAPE=${RELAY_SHAPE:-100:100}          # saturation: allocations:payload, closed loop
RELAY_INFLIGHT=${RELAY_INFLIGHT:-256}
CPU_LOAD=${CPU_LOAD:-100:100:50000}          # cpu figure: allocations:payload:offered msgs/s
BATCH=${BATCH:-32}
OTHER_MAX=${OTHER_MAX:-10}      # % of a core busy outside server, load generator and softirq: DISTURBED
QUIET_WAIT=${QUIET_WAIT:-120}   # before each column, wait up to this many seconds for the two cores to be idle
COTURN_DEBIAN_BIN=${COTURN_DEBIAN_BIN:-/usr/bin/turnserver}
COTURN_BIN=${COTURN_BIN:-}      # newest coturn, e.g. built by benches/build-coturn.sh
COTURN_ARGS=${COTURN_ARGS:-}   # extra arguments of both coturn columns
COTURN_FAST_ARGS=${COTURN_FAST_ARGS:-auto} # COTURN_BIN only; auto: --udp-recvmmsg, --sock-buf-size if its --help lists them
SKIP_BUILD=${SKIP_BUILD:-0}

TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
TERND=$TARGET/release/ternd
LOADGEN=$TARGET/release/ternd-loadgen
TURN_USER=bench TURN_PASS=benchpass TURN_REALM=bench
PORT=3478

log() { echo "[fastpath] $*" >&2; }
die() { echo "[fastpath] error: $*" >&2; exit 1; }
# kill_pid, field, median, wait_quiet
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
# reflect_binding (the in-kernel Binding load)
# shellcheck source=benches/reflector.sh
. "$ROOT/benches/reflector.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (namespaces, XDP)"
for t in ip ethtool clang taskset bpftool jq; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -x $COTURN_DEBIAN_BIN ]] || COLUMNS=${COLUMNS//coturn-debian/}
[[ -n $COTURN_BIN ]] || COLUMNS=$(echo "$COLUMNS" | tr ' ' '\n' | grep -vx coturn | tr '\n' ' ')
if [[ -n $COTURN_BIN && $COTURN_FAST_ARGS == auto ]]; then
    COTURN_FAST_ARGS=
    # The fast options of recent coturn that stay within RFC 8656 (not
    # --multiplex-peer, which shares one relay socket between allocations,
    # nor --udp-gso, which needs it).
    help=$("$COTURN_BIN" --help 2>&1 || true)
    [[ $help == *--udp-recvmmsg* ]] && COTURN_FAST_ARGS+=" --udp-recvmmsg"
    [[ $help == *--sock-buf-size* ]] && COTURN_FAST_ARGS+=" --sock-buf-size=4194304"
fi

# ---- cleanup: our processes by PID, our namespaces by name ----------------
PREFIX=tfp$$
WORK=$(mktemp -d /tmp/ternd-fastpath.XXXXXX)
SERVER_PID=
SEED_PID=
NAMESPACES=()
stop_server() { kill_pid "$SEED_PID"; SEED_PID=; kill_pid "$SERVER_PID"; SERVER_PID=; }
del_namespaces() {
    local ns
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NAMESPACES=()
}
cleanup() { stop_server; del_namespaces; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $SKIP_BUILD != 1 ]]; then
    log "building ternd and the load generator (release, $TARGET)"
    CARGO_TARGET_DIR=$TARGET cargo build --release --bin ternd >&2
    (cd benches/loadgen && CARGO_TARGET_DIR=$TARGET cargo build --release >&2)
fi
[[ -x $TERND && -x $LOADGEN ]] || die "$TERND or $LOADGEN missing"

# ---- topologies ------------------------------------------------------------
# Sets SNS CNS PNS (server, client, peer namespaces), LISTEN, RELAY_IP,
# PEER_IP, PEERS_ALLOW, IFACES (fast path interfaces) and NATIVE (1 if native XDP works).
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
add_ns() { ip netns add "$1"; NAMESPACES+=("$1"); ip -n "$1" link set lo up; }
pass_program() { # a trivial XDP_PASS program for the far ends of the veths
    [[ -f $WORK/pass.o ]] && return
    printf '%s\n' '#include <linux/bpf.h>' '#include <bpf/bpf_helpers.h>' \
        'SEC("xdp") int pass(struct xdp_md *ctx) { return XDP_PASS; }' \
        'char LICENSE[] SEC("license") = "GPL";' >"$WORK/pass.c"
    clang -O2 -target bpf -I/usr/include/x86_64-linux-gnu -c "$WORK/pass.c" -o "$WORK/pass.o"
}
setup_topology() {
    del_namespaces
    SNS=$PREFIX-s
    add_ns "$SNS"
    # bpf_fib_lookup answers only where forwarding is on.
    nsx "$SNS" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1
    case $1 in
    veth)
        CNS=$PREFIX-c PNS=$PREFIX-p
        add_ns "$CNS"
        add_ns "$PNS"
        pass_program
        local other mine theirs n
        for n in 1 2; do
            if ((n == 1)); then other=$CNS mine=s0 theirs=c0; else other=$PNS mine=s1 theirs=p0; fi
            ip -n "$SNS" link add "$mine" type veth peer name "$theirs" netns "$other"
            ip -n "$SNS" addr add "10.0.$n.1/24" dev "$mine"
            ip -n "$SNS" link set "$mine" up
            ip -n "$other" addr add "10.0.$n.2/24" dev "$theirs"
            ip -n "$other" link set "$theirs" up
            ip -n "$other" route add default via "10.0.$n.1"
            # Full checksums from the senders (XDP rewrites them
            # incrementally, never finishing an offloaded one), and an XDP
            # program on the far end, without which a veth drops what the
            # server's XDP program sends back.
            nsx "$other" ethtool -K "$theirs" tx off >/dev/null
            ip -n "$other" link set dev "$theirs" xdp obj "$WORK/pass.o" sec xdp
        done
        LISTEN=10.0.1.1 RELAY_IP=10.0.2.1 PEER_IP=10.0.2.2 PEERS_ALLOW=10.0.0.0/8 IFACES=s0,s1 NATIVE=1
        ;;
    loopback)
        CNS=$SNS PNS=$SNS
        LISTEN=127.0.0.1 RELAY_IP=127.0.0.1 PEER_IP=127.0.0.2 PEERS_ALLOW=127.0.0.0/8 IFACES=lo NATIVE=0
        ;;
    *) die "unknown topology $1 (veth, loopback)" ;;
    esac
}

# ---- servers ---------------------------------------------------------------
version_of() { # version_of COLUMN
    case $1 in
    ternd*) "$TERND" --version 2>/dev/null | head -n 1 ;;
    coturn-debian) echo "coturn $("$COTURN_DEBIAN_BIN" --version 2>/dev/null | head -n 1) ($COTURN_DEBIAN_BIN${COTURN_ARGS:+ $COTURN_ARGS})" ;;
    coturn) echo "coturn $("$COTURN_BIN" --version 2>/dev/null | head -n 1) ($COTURN_BIN $COTURN_ARGS$COTURN_FAST_ARGS)" ;;
    esac
}
start_server() { # start_server COLUMN: in the server namespace, pinned, TURN with long-term credentials
    local col=$1 out=$WORK/$1.log fp=() bin
    rm -f "$WORK/turnserver.pid" "$WORK/turndb"
    case $col in
    ternd*)
        case $col in
        ternd-xdp) fp=(--set fastpath.mode=xdp --set "fastpath.interfaces=$IFACES") ;;
        ternd-xdp-generic) fp=(--set fastpath.mode=xdp-generic --set "fastpath.interfaces=$IFACES") ;;
        esac
        ip netns exec "$SNS" taskset -c "$SERVER_CPUS" "$TERND" --set "listen.udp=$LISTEN:$PORT" --set listen.tcp= --set http.listen= \
            --set "server.shards=$SHARDS" --set server.drain_timeout=0s --set "relay.ipv4=$RELAY_IP" \
            --set "peers.allow=$PEERS_ALLOW" --set "turn.users.$TURN_USER=$TURN_PASS" \
            --set "turn.realm=$TURN_REALM" --set turn.max_allocations=1000000 \
            --set turn.max_allocations_per_user=1000000 --set turn.max_allocations_per_ip=1000000 \
            --set turn.unauthenticated_rate=0 --set turn.unauthenticated_rate_total=0 \
            "${fp[@]}" --log-level warn >"$out" 2>&1 &
        ;;
    coturn*)
        bin=$COTURN_DEBIAN_BIN extra=
        [[ $col == coturn ]] && bin=$COTURN_BIN extra=$COTURN_FAST_ARGS
        # shellcheck disable=SC2086
        ip netns exec "$SNS" taskset -c "$SERVER_CPUS" "$bin" -n --listening-ip="$LISTEN" --listening-port="$PORT" \
            --relay-ip="$RELAY_IP" --min-port=20000 --max-port=32000 \
            --no-tcp --no-tls --no-dtls --relay-threads="$SHARDS" --lt-cred-mech \
            --user="$TURN_USER:$TURN_PASS" --realm="$TURN_REALM" --allow-loopback-peers \
            --allowed-peer-ip=10.0.0.0-10.255.255.255 \
            --total-quota=0 --user-quota=0 --max-bps=0 --no-cli \
            --log-file=stdout --simple-log --pidfile="$WORK/turnserver.pid" \
            --userdb="$WORK/turndb" $COTURN_ARGS $extra >"$out" 2>&1 &
        ;;
    esac
    # `ip netns exec` and taskset exec the server: $! is its PID (not a
    # shell function's subshell, which killing would leave it running).
    SERVER_PID=$!
    if ! nsx "$CNS" "$LOADGEN" probe --server "$LISTEN:$PORT" --timeout 10; then
        tail -n 20 "$out" >&2 || true
        die "$col did not answer on $LISTEN:$PORT in $SNS within 10 s"
    fi
}

loadgen() { # loadgen ARGS...: in the client namespace, pinned, bounded
    nsx "$CNS" taskset -c "$LOAD_CPUS" timeout $((DURATION + WARMUP + 90)) "$LOADGEN" "$@"
}
relay_args() { # relay_args ALLOCS PAYLOAD RATE
    echo relay --server "$LISTEN:$PORT" --allocations "$1" --payload "$2" --rate "$3" --inflight "$RELAY_INFLIGHT" \
        --batch "$BATCH" --duration "$DURATION" --warmup "$WARMUP" --user "$TURN_USER" --password "$TURN_PASS" \
        --peer-ip "$PEER_IP" --server-pid "$SERVER_PID" ${PNS:+--peer-netns "$PNS"}
}
# us_per PCT RATE_KEY LINE: percent of one core over the interval -> microseconds per event
us_per() { awk -v c="$1" -v e="$(field "$2" "$3")" 'BEGIN { if (e + 0 > 0 && c != "?") printf "%.3f", c * 1e4 / e; else print "?" }'; }
us_per_msg() { us_per "$1" echoed_per_sec "$2"; } # us_per_msg PCT LINE: per echoed message
# other_pct LINE: busy % (of one core) outside the server, the load
# generator and softirq (binding lines: all CPUs' busy %, no softirq part)
other_pct() {
    local m q
    m=$(field machine_busy_pct "$1") q=$(field machine_softirq_pct "$1")
    if [[ $m == "?" ]]; then
        m=$(echo "$1" | tr ' ' '\n' | awk -F= '$1 ~ /^cpu[0-9]+_busy_pct$/ { s += $2; n++ } END { print (n ? s : "?") }')
        q=0
    fi
    awk -v m="$m" -v s="$(field server_cpu_pct "$1")" -v g="$(field gen_cpu_pct "$1")" -v q="$q" \
        'BEGIN { if (m == "?" || s == "?" || g == "?") { print "?"; exit } v = m - s - g - q; printf "%.0f", (v < 0 ? 0 : v) }'
}
# check_disturbed TOPO KIND COL LINE: note a disturbed run of KIND (binding,
# sat, cpu); leaves the raw line's note in NOTE (not run in a subshell, so
# that VAL keeps the mark)
check_disturbed() {
    local o
    o=$(other_pct "$4")
    NOTE="other ${o}%, $BEFORE"
    if { [[ $o != "?" ]] && ((o > OTHER_MAX)); } || ((QUIET_BUSY > OTHER_MAX)); then
        VAL[$1|disturbed_$2|$3]=1
        NOTE+=" DISTURBED"
    fi
}

declare -A VAL RAWS
# record TOPO FIG COL VALUE: one round's figure
record() { VAL[$1|$2|$3]+="$4 "; }
# record_fields TOPO COL LINE FIG=KEY...: each FIG from the raw line's KEY
record_fields() {
    local topo=$1 col=$2 line=$3 fk
    shift 3
    for fk in "$@"; do record "$topo" "${fk%%=*}" "$col" "$(field "${fk#*=}" "$line")"; done
}

measure_column() { # TOPO COL ROUND
    local topo=$1 col=$2 r=$3 line a p q
    wait_quiet
    # Cores busy with other processes just before the column: its figures
    # are DISTURBED, whatever the runs' own accounting says.
    BEFORE="before: cores ${QUIET_BUSY}% busy, load average $(cut -d' ' -f1 /proc/loadavg)"
    start_server "$col"
    # Binding requests/s
    line=$(loadgen binding --server "$LISTEN:$PORT" --duration "$DURATION" --warmup "$WARMUP" \
        --sockets "${BINDING_SHAPE%x*}" --window "${BINDING_SHAPE#*x}" --batch "$BATCH" --gso "$BINDING_GSO" --server-pid "$SERVER_PID") \
        || die "binding load failed against $col"
    record "$topo" binding "$col" "$(field answered_per_sec "$line")"
    check_disturbed "$topo" binding "$col" "$line"
    RAWS[$topo]+="round $r $col binding ($NOTE): $line"$'\n'
    # Binding requests/s from the in-kernel closed loop
    if [[ $REFLECT == 1 && $topo == veth ]]; then
        line=$(reflect_binding "$col")
        record "$topo" reflect "$col" "$(field reflected_per_sec "$line")"
        [[ $(field lost "$line") == 0 ]] || VAL[$topo|lossy_reflect|$col]=1
        check_disturbed "$topo" reflect "$col" "$line"
        RAWS[$topo]+="round $r $col reflector ($NOTE): $line"$'\n'
    fi
    # CPU per Binding at a fixed offered rate
    if ((BINDING_RATE > 0)); then
        line=$(loadgen binding --server "$LISTEN:$PORT" --duration "$DURATION" --warmup "$WARMUP" --rate "$BINDING_RATE" \
            --sockets "${BINDING_SHAPE%x*}" --window "${BINDING_SHAPE#*x}" --batch "$BATCH" --gso "$BINDING_GSO" --server-pid "$SERVER_PID") \
            || die "binding cpu load failed against $col"
        local us
        us=$(us_per "$(field machine_busy_pct "$line")" answered_per_sec "$line")
        record "$topo" bcpu_machine "$col" "$us"
        record "$topo" bcpu_cap "$col" "$(awk -v u="$us" 'BEGIN { if (u + 0 > 0) printf "%.0f", 1e6 / u; else print "?" }')"
        us=$(us_per "$(awk -v s="$(field server_cpu_pct "$line")" -v g="$(field gen_cpu_pct "$line")" \
            -v q="$(field machine_softirq_pct "$line")" 'BEGIN { print s + g + q }')" answered_per_sec "$line")
        record "$topo" bcpu_own "$col" "$us"
        record "$topo" bcpu_owncap "$col" "$(awk -v u="$us" 'BEGIN { if (u + 0 > 0) printf "%.0f", 1e6 / u; else print "?" }')"
        record "$topo" bcpu_gen "$col" "$(us_per "$(field gen_cpu_pct "$line")" answered_per_sec "$line")"
        record "$topo" bcpu_rate "$col" "$(field answered_per_sec "$line")"
        check_disturbed "$topo" bcpu "$col" "$line"
        RAWS[$topo]+="round $r $col binding cpu ($NOTE): $line"$'\n'
    fi
    if [[ $RELAY == 1 ]]; then
        # Relay at saturation
        IFS=: read -r a p <<<"$RELAY_SHAPE"
        # shellcheck disable=SC2046
        line=$(loadgen $(relay_args "$a" "$p" 0)) || { tail -n 20 "$WORK/$col.log" >&2; die "relay load failed against $col"; }
        record_fields "$topo" "$col" "$line" pps=echoed_per_sec sat_loss=loss_pct sat_p50=rtt_p50_us sat_p99=rtt_p99_us
        check_disturbed "$topo" sat "$col" "$line"
        RAWS[$topo]+="round $r $col saturation ($NOTE): $line"$'\n'
        # CPU per message at a fixed offered rate
        IFS=: read -r a p q <<<"$CPU_LOAD"
        # shellcheck disable=SC2046
        line=$(loadgen $(relay_args "$a" "$p" "$q")) || { tail -n 20 "$WORK/$col.log" >&2; die "cpu load failed against $col"; }
        record "$topo" cpu_machine "$col" "$(us_per_msg "$(field machine_busy_pct "$line")" "$line")"
        record "$topo" cpu_softirq "$col" "$(us_per_msg "$(field machine_softirq_pct "$line")" "$line")"
        record "$topo" cpu_server "$col" "$(us_per_msg "$(field server_cpu_pct "$line")" "$line")"
        record "$topo" cpu_loadgen "$col" "$(us_per_msg "$(field gen_cpu_pct "$line")" "$line")"
        record_fields "$topo" "$col" "$line" cpu_rate=echoed_per_sec cpu_loss=loss_pct cpu_p50=rtt_p50_us cpu_p99=rtt_p99_us
        check_disturbed "$topo" cpu "$col" "$line"
        RAWS[$topo]+="round $r $col cpu ($NOTE): $line"$'\n'
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/$col.log" >&2; die "$col exited during the run"; }
    stop_server
    log "$topo round $r $col done"
}

# ---- rounds ------------------------------------------------------------------
log "topologies=$TOPOLOGIES columns=$COLUMNS rounds=$ROUNDS duration=${DURATION}s server_cpus=$SERVER_CPUS load_cpus=$LOAD_CPUS"
declare -A COLS_OF
for topo in $TOPOLOGIES; do
    setup_topology "$topo"
    cols=
    for col in $COLUMNS; do
        [[ $col == ternd-xdp && $NATIVE != 1 ]] && continue # no native XDP on lo
        cols+="$col "
    done
    COLS_OF[$topo]=$cols
    for r in $(seq "$ROUNDS"); do
        order=$cols
        ((r % 2 == 0)) && order=$(echo "$cols" | tr ' ' '\n' | awk 'NF' | tac | tr '\n' ' ')
        for col in $order; do measure_column "$topo" "$col" "$r"; done
    done
    del_namespaces
done

# ---- report --------------------------------------------------------------------
med() { # med TOPO FIG COL [DEC]
    local v=${VAL[$1|$2|$3]:-}
    [[ -n $v ]] || { echo "-"; return; }
    v=$(echo "$v" | tr ' ' '\n' | awk 'NF && $1 != "?"' | DEC=${4:-0} median)
    echo "${v/\?/-}"
}
best_coturn() { # best_coturn TOPO FIG higher|lower DEC: the best coturn column's median
    local c v best=-
    for c in coturn-debian coturn; do
        [[ " ${COLS_OF[$1]} " == *" $c "* ]] || continue
        v=$(med "$1" "$2" "$c" "$4")
        [[ $v == - ]] && continue
        if [[ $best == - ]] || awk -v a="$v" -v b="$best" -v h="$3" 'BEGIN { exit !((h == "higher") ? a > b : a < b) }'; then best=$v; fi
    done
    echo "$best"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2fx", a/b; else print "-" }'; }

echo
echo "ternd fast path vs coturn: $ROUNDS round(s) x ${DURATION}s, server on CPU $SERVER_CPUS, load on CPU $LOAD_CPUS, $SHARDS shard(s)/relay thread(s)"
for col in $COLUMNS; do printf '  %-18s %s\n' "$col" "$(version_of "$col")"; done
FIGURES=(
    "binding|Binding requests/s ($BINDING_SHAPE)|higher|0"
    "reflect|Binding/s, in-kernel loop ($REFLECT_SHAPE)|higher|0"
    "bcpu_machine|CPU us/Binding, whole machine (@${BINDING_RATE}/s)|lower|3"
    "bcpu_cap|  Binding/s per core (1e6 / line above)|higher|0"
    "bcpu_own|  server + load generator + softirq|lower|3"
    "bcpu_owncap|  Binding/s per core (1e6 / line above)|higher|0"
    "bcpu_gen|  load generator process (see README)|lower|3"
    "bcpu_rate|  answered/s (below the rate: CPU-bound)|higher|0"
    "pps|relay pkt/s at saturation (${RELAY_SHAPE/:/ alloc x } B)|higher|0"
    "sat_loss|  loss % at saturation|lower|3"
    "sat_p50|  RTT p50 us at saturation|lower|0"
    "sat_p99|  RTT p99 us at saturation|lower|0"
    "cpu_machine|CPU us/msg, whole machine (@${CPU_LOAD##*:}/s)|lower|2"
    "cpu_softirq|  of which softirq|lower|2"
    "cpu_server|  server process alone|lower|2"
    "cpu_loadgen|  load generator process|lower|2"
    "cpu_rate|  echoed/s (below the rate: CPU-bound)|higher|0"
    "cpu_loss|  loss % at that rate|lower|3"
    "cpu_p50|  RTT p50 us at that rate|lower|0"
    "cpu_p99|  RTT p99 us at that rate|lower|0"
)
for topo in $TOPOLOGIES; do
    cols=${COLS_OF[$topo]}
    echo
    echo "== $topo (medians; last columns: ratio of ternd, ternd-xdp, ... to the best coturn column)"
    printf '%-44s' figure
    for col in $cols; do printf ' %17s' "$col"; done
    for col in $cols; do [[ $col == ternd* ]] && printf ' %20s' "ratio $col"; done
    echo
    for f in "${FIGURES[@]}"; do
        IFS='|' read -r key label better dec <<<"$f"
        any=
        for col in $cols; do [[ -n ${VAL[$topo|$key|$col]:-} ]] && any=1; done
        [[ -n $any ]] || continue # figure not measured (RELAY=0, REFLECT=0, loopback)
        printf '%-44s' "$label"
        for col in $cols; do
            v=$(med "$topo" "$key" "$col" "$dec")
            kind=cpu
            case $key in binding) kind=binding ;; reflect) kind=reflect ;; bcpu_*) kind=bcpu ;; pps | sat_*) kind=sat ;; esac
            [[ -n ${VAL[$topo|disturbed_$kind|$col]:-} ]] && v="$v*"
            [[ $key == reflect && -n ${VAL[$topo|lossy_reflect|$col]:-} ]] && v="$v!"
            printf ' %17s' "$v"
        done
        b=$(best_coturn "$topo" "$key" "$better" "$dec")
        for col in $cols; do [[ $col == ternd* ]] && printf ' %20s' "$(ratio "$(med "$topo" "$key" "$col" "$dec")" "$b")"; done
        echo
    done
done
echo
echo "* a run behind this figure had more than $OTHER_MAX% of a core busy outside server, load generator and softirq, or the two cores were more than $OTHER_MAX% busy with other processes just before: DISTURBED (rerun on a quiet machine; ratios within one interleaved run still compare)"
[[ $REFLECT == 1 ]] && echo "! the in-kernel loop lost requests in a run behind this figure (lost= in its raw line): the loop ran with fewer than $REFLECT_SHAPE in flight for part of the window"
[[ $REFLECT == 1 ]] && echo "Binding/s, in-kernel loop: $REFLECT_SHAPE (sockets x requests) Binding requests seeded once and kept in flight by the XDP reflector on the client veth (benches/xdp/binding_reflector.c): a closed loop with no syscall on the load side. The whole loop (server, its softirq, the reflector) runs on the server's core (CPU $SERVER_CPUS), the reflector's cost included in every column"
((BINDING_RATE > 0)) && echo "CPU us/Binding: the userspace load generator offering $BINDING_RATE Binding requests/s ($BINDING_SHAPE); every CPU's busy time in /proc/stat (softirq and the load generator included) per answered request; per core = 1e6 / that. 'server + load generator + softirq' counts only the two processes and softirq (robust to other processes on a busy machine; softirq that interrupted one of the two may count twice, so an upper bound). Valid only where answered/s reached the offered rate"
echo "CPU us/msg is only a cost where \"echoed/s\" reached the offered ${CPU_LOAD##*:}/s; below it, the machine was saturated"
echo "whole machine = every CPU's busy time in /proc/stat over the measured interval (user, system, irq, softirq, all processes, the load generator included), per echoed message (4 datagrams through the server)"
echo
echo "raw runs:"
for topo in $TOPOLOGIES; do echo " $topo"; printf '%s' "${RAWS[$topo]:-}" | sed 's/^/  /'; done
exit 0
