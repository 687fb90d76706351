#!/bin/sh
# run.sh BUILD_DIR — run the benchmarks built in BUILD_DIR and keep the output.
#
# Measures nothing itself: it prints the machine (CPU, cores, memory,
# kernel, the filesystem the stores are built on), then runs bench_json (the
# JSON validator against jansson), bench_store (appends against the disk's
# fdatasync rate, reads, open time; see the top of bench/bench_store.c),
# bench_backup (evstore backup against cp -r of the same store),
# bench_scavenge (append p99 during a scavenge against appends alone, reclaim MB/s),
# bench_bus (subscriptions and projections), bench_replay (a Lua projection
# replayed into a temporary state against a plain read and the live
# projection), bench_app (commands against raw
# appends, aggregate loads with and without snapshots), bench_app_http (commands
# over HTTP against in-process in the same run), bench_saga (the order saga
# against the same commands, timer lateness, memory per idle saga), bench_schema
# (validated appends against appends without schemas), bench_pg (the PostgreSQL
# engine's appends against the seed's append function, in a private cluster), bench_crypt
# (appends and reads of encrypted streams against plaintext ones), bench_ws_group
# (competing consumers over WebSocket against the in-process group),
# http_append.py (HTTP appends against in-process ones), bench_auth and
# http_auth.py (API key verification, requests with and without a key) and
# http_tls.py (HTTP appends and $all reads with TLS against without), and tees everything
# to BUILD_DIR/bench-results.txt.
#
# Stores are built in $EVS_BENCH_DIR (default BUILD_DIR/bench-data) and
# removed at the end.  EVS_BENCH_QUICK=1 gives a smoke run of about a minute;
# the other EVS_BENCH_* variables are described in bench/bench_store.c.
# Exit status: nonzero when a benchmark failed to run (a missed target is
# reported in the output, not as a failure).
set -u

build=${1:-build}
if [ ! -d "$build" ]; then
    echo "run.sh: build directory '$build' does not exist; run 'make build' first" >&2
    exit 2
fi
results="$build/bench-results.txt"
EVS_BENCH_DIR=${EVS_BENCH_DIR:-$build/bench-data}
export EVS_BENCH_DIR
mkdir -p "$EVS_BENCH_DIR"

# Run the benchmarks with their output going to stdout; the caller tees it.
run_all() {
    status=0
    echo "== evstore benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC') =="
    echo "commit:     $(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpu:        $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel:     $(uname -sr)"
    echo "filesystem: $(df -T "$EVS_BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 " (mounted on " $7 ")" }')"
    echo "load:       $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
    case "${EVS_BENCH_QUICK:-0}" in 0|"") mode=full ;; *) mode=quick ;; esac
    echo "mode:       $mode, data in $EVS_BENCH_DIR"
    echo
    if [ -x "$build/bench_json" ]; then
        echo "== bench_json =="
        "$build/bench_json" || status=1
        echo
    else
        echo "== bench_json: not built, skipped =="
        echo
    fi
    if [ -x "$build/bench_store" ]; then
        echo "== bench_store =="
        "$build/bench_store" || status=1
    else
        echo "== bench_store: not built ($build/bench_store missing) =="
        status=1
    fi
    if [ -x "$build/bench_dcb" ]; then
        echo
        echo "== bench_dcb =="
        "$build/bench_dcb" || status=1
    fi
    if [ -x "$build/bench_backup" ]; then
        echo
        echo "== bench_backup =="
        "$build/bench_backup" || status=1
    fi
    if [ -x "$build/bench_scavenge" ]; then
        echo
        echo "== bench_scavenge =="
        "$build/bench_scavenge" || status=1
    fi
    if [ -x "$build/bench_bus" ]; then
        echo
        echo "== bench_bus =="
        "$build/bench_bus" || status=1
    fi
    if [ -x "$build/bench_replay" ]; then
        echo
        echo "== bench_replay =="
        "$build/bench_replay" || status=1
    fi
    if [ -x "$build/bench_app" ]; then
        echo
        echo "== bench_app =="
        "$build/bench_app" || status=1
    fi
    if [ -x "$build/bench_app_http" ] && [ -x "$build/evstore" ]; then
        echo
        echo "== bench_app_http =="
        "$build/bench_app_http" "$build/evstore" || status=1
    fi
    if [ -x "$build/bench_saga" ]; then
        echo
        echo "== bench_saga =="
        "$build/bench_saga" || status=1
    fi
    if [ -x "$build/bench_schema" ]; then
        echo
        echo "== bench_schema =="
        "$build/bench_schema" || status=1
    fi
    if [ -x "$build/bench_pg" ]; then
        # the PostgreSQL engine against the seed's append function, in a private cluster
        echo
        echo "== bench_pg =="
        pgstate="$EVS_BENCH_DIR/pg_cluster.json"
        if python3 "$(dirname "$0")/../tests/pg_cluster.py" start "$pgstate" >/dev/null; then
            EVS_PG_STATE="$pgstate" "$build/bench_pg" || status=1
            python3 "$(dirname "$0")/../tests/pg_cluster.py" stop "$pgstate"
        else
            echo "bench_pg: skipped (no PostgreSQL: Debian package postgresql)"
        fi
    fi
    if [ -x "$build/bench_crypt" ]; then
        echo
        echo "== bench_crypt =="
        "$build/bench_crypt" || status=1
    fi
    if [ -x "$build/bench_ws_group" ] && [ -x "$build/evstore" ]; then
        echo
        echo "== bench_ws_group =="
        "$build/bench_ws_group" "$build/evstore" || status=1
    fi
    if [ -x "$build/evstore" ] && [ -x "$build/bench_store" ]; then
        echo
        echo "== http_append =="
        python3 "$(dirname "$0")/http_append.py" "$build" || status=1
    fi
    if [ -x "$build/evstore" ]; then
        echo
        echo "== http_saga =="
        python3 "$(dirname "$0")/http_saga.py" "$build" || status=1
    fi
    if [ -x "$build/bench_auth" ]; then
        echo
        echo "== bench_auth =="
        "$build/bench_auth" || status=1
    fi
    if [ -x "$build/evstore" ]; then
        echo
        echo "== http_auth =="
        python3 "$(dirname "$0")/http_auth.py" "$build" || status=1
        echo
        echo "== http_tls =="
        python3 "$(dirname "$0")/http_tls.py" "$build" || status=1
    fi
    return $status
}

# A pipeline's status is its last command's; carry the benchmarks' through a file.
statusfile="$build/.bench-status"
{ run_all; echo $? > "$statusfile"; } 2>&1 | tee "$results"
status=$(cat "$statusfile" 2>/dev/null || echo 1)
rm -f "$statusfile"
echo "results written to $results"
exit "$status"
