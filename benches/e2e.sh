#!/usr/bin/env bash
# End-to-end echo benchmark: each evmux backend's echo server against a
# single-threaded tokio echo server, under examples/loadgen.rs, in
# alternation (several rounds, medians), with C connections and with C plus
# IDLE idle connections (select: as many as fit below FD_SETSIZE). The
# "vs tokio" column is the median over rounds of each round's own ratio,
# which holds up better than absolute figures when the machine's load
# drifts (each round runs every server back to back). Where
# redis-server and redis-benchmark are installed, it also compares
# examples/ping.rs with redis-server under
# `redis-benchmark -t ping_inline -c 50 -P 16`.
#
# Linux only. Server and load generator are pinned to different CPUs
# where taskset exists and there are two or more. Writes a markdown table
# to $OUT (default target/e2e/results.md) and prints it. Exits 1 if any
# run reported an error (wrong or missing replies, dropped connections).
#
#   bash benches/e2e.sh                     # defaults below
#   ROUNDS=5 DURATION=10 bash benches/e2e.sh
#
# Everything talks to 127.0.0.1 only; every run is bounded in time.
set -euo pipefail

ROUNDS=${ROUNDS:-5}          # rounds; each runs every server once
DURATION=${DURATION:-3}      # measured seconds per run
WARMUP=${WARMUP:-1}          # unmeasured seconds before each run
CONNS=${CONNS:-100}          # active connections
PIPELINE=${PIPELINE:-16}     # requests in flight per connection
SIZE=${SIZE:-64}             # echo payload bytes
IDLE=${IDLE:-5000}           # idle connections in the second scenario
REDIS_REQUESTS=${REDIS_REQUESTS:-2000000}  # requests per redis-benchmark run
OUT=${OUT:-target/e2e/results.md}

cd "$(dirname "$0")/.."
if [ "$(uname -s)" != Linux ]; then
    echo "e2e.sh: Linux only (it compares epoll with select and poll)" >&2
    exit 1
fi

# Room for 5,000 idle connections on both sides.
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "e2e: building the examples (release)" >&2
cargo build --release --quiet --example echo --example ping \
    --example tokio_echo --example loadgen
BIN=target/release/examples

SERVER_CPU=()
LOAD_CPU=()
PINNING="none (taskset missing or one CPU)"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
    PINNING="server on CPU 0, load generator on CPU 1"
fi

# start_server NAME CMD...: runs CMD pinned, waits for its
# "listening on 127.0.0.1:PORT" line, sets SERVER_PID and PORT.
start_server() {
    local name=$1
    shift
    "${SERVER_CPU[@]}" "$@" >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if grep -q '^listening on ' "$WORK/server.out" 2>/dev/null; then
            PORT=$(sed -n 's/^listening on [^ ]*:\([0-9]*\) .*/\1/p' "$WORK/server.out" | head -1)
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "e2e: server $name did not start:" >&2
    cat "$WORK/server.err" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# How many more fds a select server can take below FD_SETSIZE (1024),
# counted on a running one: fd numbers it holds below 1024 are taken.
select_room() {
    start_server select "$BIN/echo" --backend select --trigger level \
        --addr 127.0.0.1:0 --idle-timeout 0
    local used
    used=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -printf '%f\n' | awk '$1 < 1024' | wc -l)
    stop_server
    # Keep a few spare for the reactor's own use (its EMFILE reserve fd).
    echo $((1024 - used - 4))
}

server_cmd() {
    case $1 in
    select) echo "$BIN/echo --backend select --trigger level --idle-timeout 0" ;;
    poll) echo "$BIN/echo --backend poll --trigger level --idle-timeout 0" ;;
    epoll-level) echo "$BIN/echo --backend epoll --trigger level --idle-timeout 0" ;;
    epoll-edge) echo "$BIN/echo --backend epoll --trigger edge --idle-timeout 0" ;;
    tokio) echo "$BIN/tokio_echo" ;;
    esac
}

SERVERS=(select poll epoll-level epoll-edge tokio)
SELECT_IDLE=$(($(select_room) - CONNS))
[ "$SELECT_IDLE" -gt "$IDLE" ] && SELECT_IDLE=$IDLE
[ "$SELECT_IDLE" -lt 0 ] && SELECT_IDLE=0
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
FAILED=0

# run_echo ROUND SCENARIO SERVER IDLE: one loadgen run; appends a row.
run_echo() {
    local round=$1 scenario=$2 server=$3 idle=$4
    # shellcheck disable=SC2046
    start_server "$server" $(server_cmd "$server") --addr 127.0.0.1:0
    local rc=0
    "${LOAD_CPU[@]}" "$BIN/loadgen" --addr "127.0.0.1:$PORT" --mode echo \
        --connections "$CONNS" --pipeline "$PIPELINE" --size "$SIZE" \
        --duration "$DURATION" --warmup "$WARMUP" --idle "$idle" \
        >"$WORK/load.out" 2>"$WORK/load.err" || rc=$?
    stop_server
    local line
    line=$(grep '^RESULT ' "$WORK/load.out" || true)
    if [ -z "$line" ]; then
        echo "e2e: loadgen failed against $server:" >&2
        cat "$WORK/load.err" >&2
        FAILED=1
        return
    fi
    [ "$rc" -ne 0 ] && FAILED=1
    field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$idle" \
        "$(field rps)" "$(field p50_us)" "$(field p99_us)" "$(field p999_us)" \
        "$(field errors)" "$(field idle_closed)" "$round" >>"$RESULTS"
    echo "e2e: $scenario $server: $(field rps) requests/s, errors $(field errors)" >&2
}

for round in $(seq "$ROUNDS"); do
    # Rotate the order each round, so no server always runs first.
    n=${#SERVERS[@]}
    for k in $(seq 0 $((n - 1))); do
        run_echo "$round" "C=$CONNS" "${SERVERS[$(((k + round) % n))]}" 0
    done
    for k in $(seq 0 $((n - 1))); do
        server=${SERVERS[$(((k + round) % n))]}
        idle=$IDLE
        [ "$server" = select ] && idle=$SELECT_IDLE
        run_echo "$round" "C=$CONNS+idle" "$server" "$idle"
    done
done

# Redis: examples/ping.rs (epoll, edge) against redis-server, alternating.
REDIS_RESULTS="$WORK/redis.tsv"
: >"$REDIS_RESULTS"
REDIS_NOTE=
redis_bench() {
    "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$1" -t ping_inline \
        -c 50 -P 16 -n "$REDIS_REQUESTS" --csv 2>/dev/null |
        awk -F'"' '/PING_INLINE/ { print $4 }'
}
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null &&
    command -v redis-cli >/dev/null; then
    REDIS_PORT=${REDIS_PORT:-16379}
    for round in $(seq "$ROUNDS"); do
        # Alternate which goes first.
        order="evmux-ping redis-server"
        [ $((round % 2)) -eq 0 ] && order="redis-server evmux-ping"
        for who in $order; do
            if [ "$who" = redis-server ]; then
                "${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
                    --save '' --appendonly no --daemonize no \
                    >"$WORK/redis.log" 2>&1 &
                SERVER_PID=$!
                for _ in $(seq 100); do
                    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
                    sleep 0.1
                done
                PORT=$REDIS_PORT
            else
                start_server ping "$BIN/ping" --backend epoll --idle-timeout 0 \
                    --addr 127.0.0.1:0
            fi
            rps=$(redis_bench "$PORT")
            stop_server
            printf '%s\t%s\t%s\n' "$who" "${rps:-0}" "$round" >>"$REDIS_RESULTS"
            [ -z "$rps" ] && FAILED=1
            echo "e2e: ping_inline $who: ${rps:-failed} requests/s" >&2
        done
    done
else
    REDIS_NOTE="redis-server or redis-benchmark is not installed: the Redis comparison was skipped (apt-get install redis-server redis-tools)."
    echo "e2e: $REDIS_NOTE" >&2
fi

mkdir -p "$(dirname "$OUT")"
{
    echo "## End-to-end echo ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r). Pinning: $PINNING."
    echo "Load: \`loadgen --mode echo --connections $CONNS --pipeline $PIPELINE --size $SIZE --duration $DURATION --warmup $WARMUP\`; median of $ROUNDS rounds, servers in rotating order; \"vs tokio\" is the median of the per-round ratios. select holds $SELECT_IDLE idle connections (FD_SETSIZE), the others $IDLE."
    echo
    echo "| scenario | server | idle | requests/s | vs tokio | p50 µs | p99 µs | p999 µs | errors | idle closed |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v servers="${SERVERS[*]}" '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            k = $1 SUBSEP $2
            if (!(k in idle)) { order[++rows] = k }
            idle[k] = $3; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5
            p99[k] = p99[k] " " $6; p999[k] = p999[k] " " $7
            err[k] += $8; closed[k] += $9; by_round[k, $10] = $4; rounds[$10] = 1
            if (!($1 in seen)) { seen[$1] = 1; scen[++nscen] = $1 }
        }
        END {
            ns = split(servers, sv, " ")
            for (s = 1; s <= nscen; s++) {
                tok = scen[s] SUBSEP "tokio"
                for (v = 1; v <= ns; v++) {
                    k = scen[s] SUBSEP sv[v]
                    if (!(k in idle)) continue
                    r = median(rps[k])
                    # The median of this round / tokio, round by round.
                    ratios = ""
                    for (rd in rounds)
                        if (((k, rd) in by_round) && ((tok, rd) in by_round) && by_round[tok, rd] > 0)
                            ratios = ratios " " by_round[k, rd] / by_round[tok, rd]
                    ratio = ratios != "" ? sprintf("%.2fx", median(ratios)) : "-"
                    printf "| %s | %s | %d | %.0f | %s | %.0f | %.0f | %.0f | %d | %d |\n",
                        scen[s], sv[v], idle[k], r, ratio, median(p50[k]),
                        median(p99[k]), median(p999[k]), err[k], closed[k]
                }
            }
        }' "$RESULTS"
    echo
    if [ -n "$REDIS_NOTE" ]; then
        echo "$REDIS_NOTE"
    else
        echo "Redis: \`redis-benchmark -t ping_inline -c 50 -P 16 -n $REDIS_REQUESTS\` (pinned like the load generator), median of $ROUNDS rounds; \"vs redis-server\" is the median of the per-round ratios."
        echo
        echo "| server | requests/s | vs redis-server |"
        echo "|---|---:|---:|"
        awk -F'\t' '
            function median(list,   a, n, i, j, t) {
                n = split(list, a, " ")
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                    if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            { v[$1] = v[$1] " " $2; at[$1, $3] = $2; rounds[$3] = 1 }
            END {
                n = split("evmux-ping redis-server", who, " ")
                for (i = 1; i <= n; i++) {
                    ratios = ""
                    for (rd in rounds)
                        if (at["redis-server", rd] > 0)
                            ratios = ratios " " at[who[i], rd] / at["redis-server", rd]
                    ratio = ratios != "" ? sprintf("%.2fx", median(ratios)) : "-"
                    printf "| %s | %.0f | %s |\n", who[i], median(v[who[i]]), ratio
                }
            }' "$REDIS_RESULTS"
    fi
} >"$OUT"

cat "$OUT"
if [ "$FAILED" -ne 0 ]; then
    echo "e2e: some runs reported errors; see the errors column" >&2
    exit 1
fi
