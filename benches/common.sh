# Shell helpers shared by benches/run.sh and benches/fastpath.sh (sourced;
# they use the caller's log, SERVER_CPUS, LOAD_CPUS, OTHER_MAX, QUIET_WAIT).

kill_pid() { # kill_pid PID: TERM, bounded wait (5 s), then KILL; reap
    local pid=$1
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
field() { # field NAME LINE
    local kv
    for kv in $2; do [[ $kv == "$1="* ]] && { echo "${kv#*=}"; return; }; done
    echo "?"
}

median() { # median of numbers on stdin (printed with DEC decimals, default 0)
    sort -g | awk -v d="${DEC:-0}" '{a[NR]=$1} END {if (NR==0) print "?"; else if (NR%2) printf "%.*f\n", d, a[(NR+1)/2]; else printf "%.*f\n", d, (a[NR/2]+a[NR/2+1])/2}'
}

single_cpu() { [[ $1 =~ ^[0-9]+$ ]]; }
cores_busy() { # busy % of the server core + the load core over 1 s (nothing of ours running)
    local a b
    a=$(grep -E "^cpu($SERVER_CPUS|$LOAD_CPUS) " /proc/stat)
    sleep 1
    b=$(grep -E "^cpu($SERVER_CPUS|$LOAD_CPUS) " /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '{ t = 0; for (i = 2; i <= 9; i++) t += $i; idle = $5 + $6
        if (NR <= 2) { T[$1] = t; I[$1] = idle } else { s += 100 * (1 - (idle - I[$1]) / (t - T[$1] + 1e-9)) } }
        END { printf "%.0f", s }'
}
# wait_quiet: wait (bounded by QUIET_WAIT) until other processes leave the
# two cores alone; leaves the last busy % seen in QUIET_BUSY
wait_quiet() {
    QUIET_BUSY=0
    single_cpu "$SERVER_CPUS" && single_cpu "$LOAD_CPUS" || return 0
    local busy waited=0
    busy=$(cores_busy)
    QUIET_BUSY=$busy
    (( busy <= OTHER_MAX )) && return 0
    log "the cores are ${busy}% busy with other processes: waiting up to ${QUIET_WAIT}s"
    while (( waited < QUIET_WAIT )); do
        sleep 4
        waited=$((waited + 5))
        busy=$(cores_busy)
        QUIET_BUSY=$busy
        (( busy <= OTHER_MAX )) && return 0
    done
    log "still ${busy}% busy after ${QUIET_WAIT}s: measuring anyway"
}
