#!/usr/bin/env bash
# examples/kv.rs against redis-server under redis-benchmark: the tests
# ping_inline, ping_mbulk, set, get and incr, 50 clients, at pipeline
# depths 1 and 16, in the same run. Each round starts both servers afresh
# and keeps both up; each test runs on one and straight away on the other
# (who goes first alternates), so the two runs of a pair see the same load.
# Every test is its own redis-benchmark run, and each server's CPU time for
# it comes from /proc/PID/stat (utime + stime) before and after. Ratios are
# medians of the per-round ratios (load on a shared machine drifts).
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

declare -A PID=() PORT=()
WORK=$(mktemp -d)
cleanup() {
    for pid in "${PID[@]}"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
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

# start WHO: starts kv or redis-server; sets PID[WHO] and PORT[WHO].
start() {
    local out="$WORK/$1.out"
    if [ "$1" = redis-server ]; then
        "${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
            --save '' --appendonly no --io-threads 1 --daemonize no >"$out" 2>&1 &
        PID[$1]=$!
        PORT[$1]=$REDIS_PORT
        for _ in $(seq 100); do
            # Listening yet? (bash's /dev/tcp: a connect, nothing sent)
            if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
                return 0
            fi
            sleep 0.1
        done
    else
        "${SERVER_CPU[@]}" "$KV" --backend epoll --trigger edge --idle-timeout 0 \
            --addr 127.0.0.1:0 >"$out" 2>&1 &
        PID[$1]=$!
        for _ in $(seq 100); do
            if grep -q '^listening on ' "$out" 2>/dev/null; then
                PORT[$1]=$(sed -n 's/^listening on [^ ]*:\([0-9]*\) .*/\1/p' "$out" | head -1)
                return 0
            fi
            sleep 0.1
        done
    fi
    echo "redis.sh: $1 did not start:" >&2
    cat "$out" >&2
    exit 1
}

stop() {
    local pid=${PID[$1]}
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PID[$1]=
}

# WHO's CPU time so far, in clock ticks: utime + stime, the 14th and 15th
# fields of /proc/PID/stat (counted after the parenthesised name, which may
# hold spaces).
cpu_ticks() {
    sed 's/^.*) //' "/proc/${PID[$1]}/stat" | awk '{ print $12 + $13 }'
}

# bench ROUND DEPTH N TEST WHO: one redis-benchmark run; appends a row.
bench() {
    local round=$1 depth=$2 n=$3 test=$4 who=$5 before after rps per_cpu
    before=$(cpu_ticks "$who")
    rps=$(timeout 600 "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "${PORT[$who]}" \
        -t "$test" -c "$CLIENTS" -n "$n" -P "$depth" --csv 2>"$WORK/bench.err" |
        awk -F'"' 'NR > 1 && $2 != "" { print $4; exit }') || true
    after=$(cpu_ticks "$who")
    if [ -z "$rps" ] || grep -qi 'error\|warning' "$WORK/bench.err"; then
        echo "redis.sh: $test -P $depth against $who failed:" >&2
        cat "$WORK/bench.err" >&2
        FAILED=1
        rps=${rps:-0}
    fi
    # Requests per second of server CPU time.
    per_cpu=$(awk -v n="$n" -v t=$((after - before)) -v hz="$TICKS" \
        'BEGIN { printf "%.0f", (t > 0 ? n * hz / t : 0) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$depth" "$test" "$who" "$rps" "$per_cpu" \
        "$round" >>"$RESULTS"
    echo "redis.sh: round $round -P $depth $test $who: $rps requests/s, $per_cpu per CPU-second" >&2
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
FAILED=0
for round in $(seq "$ROUNDS"); do
    # Both servers run for the whole round (the idle one costs nothing);
    # each test runs on one, then at once on the other, so the two runs of
    # a pair are seconds apart and see the same load. Who goes first
    # alternates from test to test and from round to round.
    start kv
    start redis-server
    k=$round
    for depth in $DEPTHS; do
        n=$N16
        [ "$depth" -eq 1 ] && n=$N1
        for test in $TESTS; do
            k=$((k + 1))
            order="kv redis-server"
            [ $((k % 2)) -eq 0 ] && order="redis-server kv"
            for who in $order; do
                bench "$round" "$depth" "$n" "$test" "$who"
            done
        done
    done
    stop kv
    stop redis-server
done

mkdir -p "$(dirname "$OUT")"
{
    echo "## kv vs redis-server ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r); $(redis-server --version | cut -d' ' -f1-3). Pinning: $PINNING."
    echo "Load: \`redis-benchmark -t TEST -c $CLIENTS -P DEPTH -n N\` (N = $N1 at depth 1, $N16 otherwise), $ROUNDS rounds; each test runs on both servers back to back, who goes first alternating. requests/s and per CPU-s (requests per second of the server's own CPU time) are medians over rounds; the ratios are medians of the per-round kv / redis-server ratios."
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
