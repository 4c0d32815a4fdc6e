#!/usr/bin/env bash
# System calls and server CPU per request, end to end: each echo server
# under examples/loadgen.rs (C connections x PIPELINE in flight x SIZE
# bytes), with `perf stat -e 'syscalls:sys_enter_*'` attached to the server
# for the whole load run and the server's CPU time read from
# /proc/PID/stat before and after. Rounds rotate the order of the servers;
# figures are medians over rounds, "per CPU-s vs tokio" the median of each
# round's own ratio.
#
#   bash benches/syscalls.sh                       # defaults below
#   SERVERS="epoll-edge uring-edge tokio" ROUNDS=5 bash benches/syscalls.sh
#
# Linux only; needs perf with the syscalls tracepoints (root, or
# kernel.perf_event_paranoid <= 1). Talks to 127.0.0.1 only. Prints a
# markdown table, and the busiest system calls per server.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
CONNS=${CONNS:-100}
PIPELINE=${PIPELINE:-16}
SIZE=${SIZE:-64}
IDLE=${IDLE:-0}
SERVERS=${SERVERS:-"epoll-edge uring-edge uring-level any-epoll-edge tokio"}

cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --example echo --example tokio_echo --example loadgen
BIN=target/release/examples
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

SERVER_CPU=()
LOAD_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
fi

server_cmd() {
    local echo="$BIN/echo --idle-timeout 0 --addr 127.0.0.1:0"
    case $1 in
    epoll-level) echo "$echo --backend epoll --trigger level" ;;
    epoll-edge) echo "$echo --backend epoll --trigger edge" ;;
    uring-level) echo "$echo --backend uring --trigger level" ;;
    uring-edge) echo "$echo --backend uring --trigger edge" ;;
    poll) echo "$echo --backend poll --trigger level" ;;
    # The same binary, the backend from the environment instead of the flag.
    any-epoll-edge) echo "env EVMUX_BACKEND=epoll $echo --trigger edge" ;;
    tokio) echo "$BIN/tokio_echo --addr 127.0.0.1:0" ;;
    *) echo "syscalls.sh: unknown server $1" >&2; exit 2 ;;
    esac
}

# CPU ticks (user + system) of PID.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run_one() {
    local round=$1 server=$2
    # shellcheck disable=SC2046
    "${SERVER_CPU[@]}" $(server_cmd "$server") >"$WORK/out" 2>"$WORK/err" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        grep -q '^listening on ' "$WORK/out" 2>/dev/null && break
        sleep 0.1
    done
    local port
    port=$(sed -n 's/^listening on [^ ]*:\([0-9]*\).*/\1/p' "$WORK/out" | head -1)
    [ -n "$port" ] || {
        echo "syscalls.sh: $server did not start within 30 s:" >&2
        cat "$WORK/out" "$WORK/err" >&2
        exit 1
    }
    perf stat -e 'syscalls:sys_enter_*' -x, -o "$WORK/perf" -p "$SERVER_PID" &
    local perf=$!
    sleep 0.2
    local before
    before=$(ticks "$SERVER_PID")
    "${LOAD_CPU[@]}" "$BIN/loadgen" --addr "127.0.0.1:$port" --mode echo \
        --connections "$CONNS" --pipeline "$PIPELINE" --size "$SIZE" \
        --duration "$DURATION" --warmup 0 --idle "$IDLE" >"$WORK/load" 2>&1
    local after
    after=$(ticks "$SERVER_PID")
    kill -INT "$perf"
    wait "$perf" 2>/dev/null || true
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    local line requests rps calls
    line=$(grep '^RESULT ' "$WORK/load")
    requests=$(echo "$line" | tr ' ' '\n' | sed -n 's/^requests=//p')
    rps=$(echo "$line" | tr ' ' '\n' | sed -n 's/^rps=//p')
    calls=$(awk -F, '$1 ~ /^[0-9]+$/ { s += $1 } END { print s + 0 }' "$WORK/perf")
    local hz
    hz=$(getconf CLK_TCK)
    awk -v r="$round" -v s="$server" -v q="$requests" -v rps="$rps" -v c="$calls" \
        -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { cpu = t / hz; printf "%s\t%s\t%s\t%.0f\t%.3f\t%.1f\n", r, s, rps, q / (cpu > 0 ? cpu : 1e-9), cpu, 1000 * c / q }' \
        >>"$WORK/rows"
    awk -F, -v s="$server" '$1 ~ /^[0-9]+$/ && $1 > 0 { sub("syscalls:sys_enter_", "", $3); print s "\t" $3 "\t" $1 }' \
        "$WORK/perf" >>"$WORK/calls.$round"
    printf 'round %s %s: %s req/s, %s calls\n' "$round" "$server" "$rps" "$calls" >&2
}

read -r -a LIST <<<"$SERVERS"
for round in $(seq "$ROUNDS"); do
    n=${#LIST[@]}
    for k in $(seq 0 $((n - 1))); do
        run_one "$round" "${LIST[$(((k + round) % n))]}"
    done
done

echo "Load: loadgen --mode echo --connections $CONNS --pipeline $PIPELINE --size $SIZE --duration $DURATION --idle $IDLE; $ROUNDS rounds, medians."
echo
echo "| server | requests/s | requests per server CPU-s | per CPU-s vs tokio | server CPU s | system calls per 1000 requests |"
echo "|---|---:|---:|---:|---:|---:|"
awk -F'\t' -v order="$SERVERS" '
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rps[$2] = rps[$2] " " $3; per[$2] = per[$2] " " $4; cpu[$2] = cpu[$2] " " $5
      calls[$2] = calls[$2] " " $6; by[$2, $1] = $4; rounds[$1] = 1 }
    END {
        n = split(order, sv, " ")
        for (i = 1; i <= n; i++) {
            s = sv[i]; ratios = ""
            for (r in rounds) if (by["tokio", r] > 0) ratios = ratios " " by[s, r] / by["tokio", r]
            printf "| %s | %.0f | %.0f | %s | %.2f | %.1f |\n", s, median(rps[s]), median(per[s]),
                ratios == "" ? "-" : sprintf("%.2fx", median(ratios)), median(cpu[s]), median(calls[s])
        }
    }' "$WORK/rows"
echo
echo "Busiest system calls (round 1, count):"
sort -t$'\t' -k1,1 -k3,3nr "$WORK/calls.1" | awk -F'\t' '{ if (seen[$1]++ < 4) printf "  %s %s %s\n", $1, $2, $3 }'
