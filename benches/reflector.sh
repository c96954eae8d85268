# The in-kernel Binding load of benches/fastpath.sh (sourced; uses its
# WORK, SNS, CNS, LISTEN, PORT, LOADGEN, SERVER_PID, SERVER_CPUS, WARMUP,
# DURATION, REFLECT_SHAPE, log, die, nsx).
#
# benches/xdp/binding_reflector.c on the client veth (c0) turns every
# Binding success response of the server back into a new Binding request
# and XDP_TXes it: a closed loop of REFLECT_SHAPE (sockets x requests per
# socket) requests that `ternd-loadgen seed` sends once. No syscall per
# request on the load side, so the load generator is no longer what limits
# the figure. The seeder runs on the server's CPU: veth work runs in the
# softirq of the CPU that sent, so the whole loop (server, its receive and
# send paths, the reflector) stays on the server's core.

reflector_program() {
    [[ -f $WORK/reflector.o ]] && return
    clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$ROOT/benches/xdp/binding_reflector.c" \
        -o "$WORK/reflector.o"
}

# map_id PROG NAME: the id of the map NAME of program PROG
map_id() {
    local id
    for id in $(bpftool -j prog show id "$1" | jq -r '.map_ids[]?'); do
        [[ $(bpftool -j map show id "$id" | jq -r .name) == "$2" ]] && { echo "$id"; return; }
    done
    die "program $1 has no map $2"
}
# ctl_set MAP KEY VALUE: one u32 of the control array (host order, little endian)
ctl_set() {
    local v=$3
    bpftool map update id "$1" key "$2" 0 0 0 value $((v & 255)) $(((v >> 8) & 255)) $(((v >> 16) & 255)) $(((v >> 24) & 255))
}
# counter MAP KEY: a per-CPU u64 counter summed over the CPUs (the maps
# carry no BTF when iproute2 loads them, so bpftool prints bytes)
counter() {
    bpftool -j map lookup id "$1" key "$2" 0 0 0 | jq '
        def hex: ltrimstr("0x") | explode | reduce .[] as $c (0; . * 16 + (if $c >= 97 then $c - 87 elif $c >= 65 then $c - 55 else $c - 48 end));
        [.values[].value | reverse | reduce .[] as $b (0; . * 256 + ($b | hex))] | add'
}
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime of PID
# stat_usage FILE0 FILE1 SECS SERVER_TICKS: key=value CPU figures between two /proc/stat copies, in % of one core
stat_usage() {
    awk -v secs="$3" -v st="$4" -v hz="$(getconf CLK_TCK)" '
        $1 ~ /^cpu[0-9]+$/ { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6
            if (FNR == NR) { B[$1] = b; T[$1] = t; S[$1] = $8; next }
            d = t - T[$1]; if (d <= 0) d = 1
            busy += 100 * (b - B[$1]) / d; soft += 100 * ($8 - S[$1]) / d
            per = per sprintf(" %s_busy_pct=%.1f", $1, 100 * (b - B[$1]) / d) }
        END { printf "machine_busy_pct=%.1f machine_softirq_pct=%.1f server_cpu_pct=%.1f gen_cpu_pct=0%s", busy, soft, 100 * st / hz / secs, per }' "$1" "$2"
}

# reflect_binding COL: one closed-loop run against the running server;
# prints one line of key=value figures (reflected_per_sec=...)
reflect_binding() {
    local col=$1 prog ctl cnt a b t0 t1 k0 k1 seeded drained
    reflector_program
    # veth drops XDP_TX frames towards a peer without NAPI: the server side
    # gets it from ternd's native program, from GRO (generic XDP cannot sit
    # beside a native program) or from an XDP_PASS program.
    case $col in
    ternd-xdp) ;;
    ternd-xdp-generic) nsx "$SNS" ethtool -K s0 gro on >/dev/null ;;
    *) ip -n "$SNS" link set dev s0 xdp obj "$WORK/pass.o" sec xdp ;;
    esac
    ip -force -n "$CNS" link set dev c0 xdp obj "$WORK/reflector.o" sec xdp
    prog=$(nsx "$CNS" bpftool -j net show dev c0 | jq '.[0].xdp[0].id')
    ctl=$(map_id "$prog" ctl) cnt=$(map_id "$prog" counts)
    ctl_set "$ctl" 1 "$PORT"
    ctl_set "$ctl" 0 0
    nsx "$CNS" taskset -c "$SERVER_CPUS" timeout $((WARMUP + DURATION + 30)) "$LOADGEN" seed --server "$LISTEN:$PORT" \
        --sockets "${REFLECT_SHAPE%x*}" --window "${REFLECT_SHAPE#*x}" --hold $((WARMUP + DURATION + 5)) >"$WORK/seed.out" &
    SEED_PID=$!
    sleep "$WARMUP"
    a=$(counter "$cnt" 0) t0=$(date +%s.%N) k0=$(proc_ticks "$SERVER_PID")
    grep '^cpu[0-9]' /proc/stat >"$WORK/stat0"
    sleep "$DURATION"
    b=$(counter "$cnt" 0) t1=$(date +%s.%N) k1=$(proc_ticks "$SERVER_PID")
    grep '^cpu[0-9]' /proc/stat >"$WORK/stat1"
    # Stop the loop: what is still in flight goes up to the seeder.
    ctl_set "$ctl" 0 1
    wait "$SEED_PID" || true
    SEED_PID=
    ip -force -n "$CNS" link set dev c0 xdp obj "$WORK/pass.o" sec xdp
    case $col in
    ternd-xdp) ;;
    ternd-xdp-generic) nsx "$SNS" ethtool -K s0 gro off >/dev/null ;;
    *) ip -n "$SNS" link set dev s0 xdp off ;;
    esac
    seeded=$(field seeded "$(cat "$WORK/seed.out")") drained=$(field drained "$(cat "$WORK/seed.out")")
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    printf 'reflected_per_sec=%s in_flight=%s lost=%s elapsed=%s %s\n' \
        "$(awk -v a="$a" -v b="$b" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / s }')" "$seeded" \
        "$(awk -v s="$seeded" -v d="$drained" 'BEGIN { print (s == "?" || d == "?") ? "?" : s - d }')" "$secs" \
        "$(stat_usage "$WORK/stat0" "$WORK/stat1" "$secs" $((k1 - k0)))"
}
