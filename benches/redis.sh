#!/usr/bin/env bash
# examples/kv.rs against redis-server under redis-benchmark: the tests
# ping_inline, ping_mbulk, set, get and incr, 50 clients, at pipeline
# depths 1 and 16, in the same run. Each round starts both servers afresh
# (in alternating order) and runs every test against each; every test is
# its own redis-benchmark run, and each server's CPU time for it comes from
# /proc/PID/stat (utime + stime) before and after. Ratios are medians of
# the per-round ratios (load on a shared machine drifts between rounds).
#
# redis-server runs on 127.0.0.1 with persistence off (--save ''
# --appendonly no) and --io-threads 1; kv on epoll, edge-triggered, with
# no idle timeout. Servers are pinned to CPU 0 and redis-benchmark to CPU 1
# where taskset exists and there are two CPUs or more.
#
#   bash benches/redis.sh                      # defaults below
#   ROUNDS=3 N1=100000 N16=1000000 bash benches/redis.sh
#
# Needs redis-server and redis-benchmark (apt-get install redis-server
# redis-tools). Writes a markdown table to $OUT (default
# target/redis/results.md) and prints it. Exits 1 if a run failed. Run it
# under the machine's benchmark lock: flock /tmp/evmux-bench.lock bash
# benches/redis.sh
set -euo pipefail

ROUNDS=${ROUNDS:-5}                                # rounds
TESTS=${TESTS:-ping_inline ping_mbulk set get incr}
CLIENTS=${CLIENTS:-50}                             # redis-benchmark -c
DEPTHS=${DEPTHS:-1 16}                             # redis-benchmark -P
N1=${N1:-200000}                                   # -n at depth 1
N16=${N16:-2000000}                                # -n at the other depths
REDIS_PORT=${REDIS_PORT:-16379}
OUT=${OUT:-target/redis/results.md}

cd "$(dirname "$0")/.."
for tool in redis-server redis-benchmark; do
    if ! command -v "$tool" >/dev/null; then
        echo "redis.sh: $tool is not installed (apt-get install redis-server redis-tools)" >&2
        exit 1
    fi
done

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "redis.sh: building examples/kv (release)" >&2
cargo build --release --quiet --example kv
KV=target/release/examples/kv

SERVER_CPU=()
LOAD_CPU=()
PINNING="none (taskset missing or one CPU)"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
    PINNING="servers on CPU 0, redis-benchmark on CPU 1"
fi
TICKS=$(getconf CLK_TCK)

# start WHO: starts kv or redis-server; sets SERVER_PID and PORT.
start() {
    if [ "$1" = redis-server ]; then
        "${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
            --save '' --appendonly no --io-threads 1 --daemonize no \
            >"$WORK/server.out" 2>&1 &
        SERVER_PID=$!
        PORT=$REDIS_PORT
        for _ in $(seq 100); do
            # Listening yet? (bash's /dev/tcp: a connect, nothing sent)
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
    else
        "${SERVER_CPU[@]}" "$KV" --backend epoll --trigger edge --idle-timeout 0 \
            --addr 127.0.0.1:0 >"$WORK/server.out" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do
            if grep -q '^listening on ' "$WORK/server.out" 2>/dev/null; then
                PORT=$(sed -n 's/^listening on [^ ]*:\([0-9]*\) .*/\1/p' "$WORK/server.out" | head -1)
                return 0
            fi
            sleep 0.1
        done
    fi
    echo "redis.sh: $1 did not start:" >&2
    cat "$WORK/server.out" >&2
    exit 1
}

stop() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# The server's CPU time so far, in clock ticks: utime + stime, the 14th
# and 15th fields of /proc/PID/stat (counted after the parenthesised name,
# which may hold spaces).
cpu_ticks() {
    sed 's/^.*) //' "/proc/$SERVER_PID/stat" | awk '{ print $12 + $13 }'
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
FAILED=0
for round in $(seq "$ROUNDS"); do
    order="kv redis-server"
    [ $((round % 2)) -eq 0 ] && order="redis-server kv"
    for depth in $DEPTHS; do
        n=$N16
        [ "$depth" -eq 1 ] && n=$N1
        for who in $order; do
            start "$who"
            for test in $TESTS; do
                before=$(cpu_ticks)
                rps=$(timeout 600 "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -t "$test" \
                    -c "$CLIENTS" -n "$n" -P "$depth" --csv 2>"$WORK/bench.err" |
                    awk -F'"' 'NR > 1 && $2 != "" { print $4; exit }') || true
                after=$(cpu_ticks)
                if [ -z "$rps" ] || grep -qi 'error\|warning' "$WORK/bench.err"; then
                    echo "redis.sh: $test -P $depth against $who failed:" >&2
                    cat "$WORK/bench.err" >&2
                    FAILED=1
                    rps=${rps:-0}
                fi
                # Requests per second of server CPU time.
                per_cpu=$(awk -v n="$n" -v t=$((after - before)) -v hz="$TICKS" \
                    'BEGIN { printf "%.0f", (t > 0 ? n * hz / t : 0) }')
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$depth" "$test" "$who" "$rps" \
                    "$per_cpu" "$round" >>"$RESULTS"
                echo "redis.sh: round $round -P $depth $test $who: $rps requests/s, $per_cpu per CPU-second" >&2
            done
            stop
        done
    done
done

mkdir -p "$(dirname "$OUT")"
{
    echo "## kv vs redis-server ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r); $(redis-server --version | cut -d' ' -f1-3). Pinning: $PINNING."
    echo "Load: \`redis-benchmark -t TEST -c $CLIENTS -P DEPTH -n N\` (N = $N1 at depth 1, $N16 otherwise), $ROUNDS rounds, servers in alternating order. requests/s and per CPU-s (requests per second of the server's own CPU time) are medians over rounds; the ratios are medians of the per-round kv / redis-server ratios."
    echo
    echo "| -P | test | kv requests/s | redis-server requests/s | kv / redis | kv per CPU-s | redis per CPU-s | kv / redis per CPU-s |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            k = $1 SUBSEP $2
            if (!(k in seen)) { seen[k] = 1; order[++rows] = k }
            rps[k, $3] = rps[k, $3] " " $4; cpu[k, $3] = cpu[k, $3] " " $5
            at[k, $3, $6] = $4; atc[k, $3, $6] = $5; rounds[$6] = 1
        }
        END {
            for (r = 1; r <= rows; r++) {
                k = order[r]
                split(k, parts, SUBSEP)
                ratios = ""; cratios = ""
                for (rd in rounds) {
                    if (at[k, "redis-server", rd] > 0)
                        ratios = ratios " " at[k, "kv", rd] / at[k, "redis-server", rd]
                    if (atc[k, "redis-server", rd] > 0)
                        cratios = cratios " " atc[k, "kv", rd] / atc[k, "redis-server", rd]
                }
                printf "| %s | %s | %.0f | %.0f | %s | %.0f | %.0f | %s |\n", parts[1], parts[2],
                    median(rps[k, "kv"]), median(rps[k, "redis-server"]),
                    ratios != "" ? sprintf("%.2fx", median(ratios)) : "-",
                    median(cpu[k, "kv"]), median(cpu[k, "redis-server"]),
                    cratios != "" ? sprintf("%.2fx", median(cratios)) : "-"
            }
        }' "$RESULTS"
} >"$OUT"
cp "$RESULTS" "${OUT%.md}.tsv"

cat "$OUT"
if [ "$FAILED" -ne 0 ]; then
    echo "redis.sh: some runs failed; see above" >&2
    exit 1
fi
