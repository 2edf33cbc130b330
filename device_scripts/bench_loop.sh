#!/system/bin/sh
# bench_loop.sh: run a benchmark binary RUNS times pinned to a CPU mask, so a measurement
# can be repeated by hand exactly as the profiler ran it.
#
# Usage: sh /data/local/tmp/bench_loop.sh BINARY MASK RUNS [ARGS...]
#   MASK: hex affinity mask for taskset (e.g. 80 = cpu7, f0 = cpus 4-7); "-" = no pinning.
#   e.g. sh bench_loop.sh /data/local/tmp/benchmark_model 80 3 \
#          --graph=/data/local/tmp/m.tflite --num_threads=1 --min_secs=0 --warmup_min_secs=0
#
# Output: key=value header lines, then per run
#   @@@ begin run=I
#   <the binary's stdout and stderr, verbatim>
#   @@@ end run=I
#   run=I rc=R
# and finally runs_failed=K. Exit status 0 when every run returned 0, else 1; 2 on bad usage.
# Env: BENCH_LOOP_SLEEP_S = seconds to sleep between runs (cool-down), default 0.

kv() { printf '%s=%s\n' "$1" "$2"; }

usage() {
    kv error "$1"
    kv usage "bench_loop.sh BINARY MASK RUNS [ARGS...]"
    exit 2
}

[ $# -ge 3 ] || usage missing_arguments
binary=$1
mask=$2
runs=$3
shift 3
case "$runs" in
    '' | *[!0-9]*) usage "runs_not_a_number_$runs" ;;
esac
[ "$runs" -ge 1 ] || usage runs_must_be_positive
case "$mask" in
    - | '') mask=- ;;
    *[!0-9a-fA-Fx]*) usage "mask_not_hex_$mask" ;;
esac
pause=${BENCH_LOOP_SLEEP_S:-0}

kv binary "$binary"
kv mask "$mask"
kv runs "$runs"
if [ "$mask" = - ]; then
    use_taskset=0
    kv taskset unused
elif command -v taskset >/dev/null 2>&1; then
    use_taskset=1
    kv taskset used
else
    use_taskset=0
    kv taskset missing
fi

failed=0
i=1
while [ "$i" -le "$runs" ]; do
    if [ "$i" -gt 1 ] && [ "$pause" != 0 ]; then
        sleep "$pause"
    fi
    echo "@@@ begin run=$i"
    if [ "$use_taskset" = 1 ]; then
        taskset "$mask" "$binary" "$@" 2>&1
    else
        "$binary" "$@" 2>&1
    fi
    rc=$?
    # The binary's last line may lack a newline; the parser accepts the marker trailing it.
    echo "@@@ end run=$i"
    echo "run=$i rc=$rc"
    [ "$rc" = 0 ] || failed=$((failed + 1))
    i=$((i + 1))
done
kv runs_failed "$failed"
[ "$failed" = 0 ]
