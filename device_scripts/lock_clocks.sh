#!/system/bin/sh
# lock_clocks.sh: pin CPU clocks at their maximum for repeatable timings (root only),
# and put the previous settings back. One key=value per line.
#
# Usage: sh /data/local/tmp/lock_clocks.sh [lock|unlock] [CPUS...]
#   CPUS: "4 5 6 7", "4-7" or "4,5,6,7"; default: every CPU with cpufreq.
#   On Android run it as root: adb shell su -c 'sh /data/local/tmp/lock_clocks.sh lock 4-7'
#
# lock: saves governor/scaling_min_freq/scaling_max_freq to the state file (once: a
# second lock keeps the original settings), sets the `performance` governor (or
# `userspace` + scaling_setspeed) and scaling_min_freq = scaling_max_freq =
# cpuinfo_max_freq, then reads them back. unlock: restores and removes the state file.
# Without cpufreq or without root it changes nothing, prints locked=0 and a reason, and
# exits 0 (the caller then detects throttling with freq_thermal.sh instead).
# Env: LOCK_CLOCKS_STATE (state file), SYSFS_ROOT (default /sys, for tests).

SYS=${SYSFS_ROOT:-/sys}
CPU_DIR="$SYS/devices/system/cpu"
if [ -n "$LOCK_CLOCKS_STATE" ]; then
    STATE=$LOCK_CLOCKS_STATE
elif [ -d /data/local/tmp ] && [ -w /data/local/tmp ]; then
    STATE=/data/local/tmp/lock_clocks.state
else
    STATE=${TMPDIR:-/tmp}/lock_clocks.state
fi

kv() { printf '%s=%s\n' "$1" "$2"; }

read_file() {
    if [ -r "$1" ]; then
        head -n 1 "$1" 2>/dev/null | tr -d '\r'
    fi
}

# Write a sysfs value; a refused write returns non-zero and prints nothing.
write_sys() { { printf '%s\n' "$2" >"$1"; } 2>/dev/null; }

is_uint() {
    case "$1" in
        '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

usage() {
    kv error "$1"
    kv usage "lock_clocks.sh [lock|unlock] [CPUS: 4 5 6 7 | 4-7 | 4,5,6,7]"
    exit 2
}

action=${1:-lock}
case "$action" in
    lock | unlock) [ $# -gt 0 ] && shift ;;
    *) usage "unknown_action_$action" ;;
esac
kv action "$action"

# ---------------------------------------------------------------- which CPUs
cpus=""
for tok in $(printf '%s ' "$@" | tr ',' ' '); do
    case "$tok" in
        *-*)
            lo=${tok%-*}
            hi=${tok#*-}
            is_uint "$lo" && is_uint "$hi" || usage "bad_cpu_list_$tok"
            i=$lo
            while [ "$i" -le "$hi" ]; do
                cpus="$cpus $i"
                i=$((i + 1))
            done
            ;;
        *)
            is_uint "$tok" || usage "bad_cpu_list_$tok"
            cpus="$cpus $tok"
            ;;
    esac
done
if [ -z "$cpus" ]; then
    for d in "$CPU_DIR"/cpu[0-9]*; do
        [ -d "$d/cpufreq" ] && cpus="$cpus ${d##*/cpu}"
    done
fi

with_freq=""
for c in $cpus; do
    [ -r "$CPU_DIR/cpu$c/cpufreq/scaling_governor" ] && with_freq="$with_freq $c"
done
if [ -z "$with_freq" ]; then
    if [ "$action" = lock ]; then kv locked 0; else kv restored 0; fi
    kv reason no_cpufreq
    exit 0
fi
if [ "$(id -u 2>/dev/null)" != "0" ]; then
    if [ "$action" = lock ]; then kv locked 0; else kv restored 0; fi
    kv reason not_root
    exit 0
fi
kv state_file "$STATE"

# ---------------------------------------------------------------- lock
if [ "$action" = lock ]; then
    ok=1
    for c in $with_freq; do
        f="$CPU_DIR/cpu$c/cpufreq"
        if ! { [ -f "$STATE" ] && grep -q "^cpu$c " "$STATE"; }; then
            printf 'cpu%s %s %s %s\n' "$c" "$(read_file "$f/scaling_governor")" \
                "$(read_file "$f/scaling_min_freq")" "$(read_file "$f/scaling_max_freq")" >>"$STATE" ||
                { kv locked 0; kv reason state_not_writable; exit 1; }
        fi
        target=$(read_file "$f/cpuinfo_max_freq")
        is_uint "$target" || { ok=0; kv "cpu${c}_error" no_cpuinfo_max_freq; continue; }
        governors=$(read_file "$f/scaling_available_governors")
        case " $governors " in
            *" performance "*) write_sys "$f/scaling_governor" performance ;;
            *" userspace "*)
                write_sys "$f/scaling_governor" userspace
                write_sys "$f/scaling_setspeed" "$target"
                ;;
            *) write_sys "$f/scaling_governor" performance ;;  # list unreadable: try anyway
        esac
        # max before min: the kernel refuses min > max.
        write_sys "$f/scaling_max_freq" "$target"
        write_sys "$f/scaling_min_freq" "$target"
        gov=$(read_file "$f/scaling_governor")
        min=$(read_file "$f/scaling_min_freq")
        max=$(read_file "$f/scaling_max_freq")
        kv "cpu${c}_governor" "$gov"
        kv "cpu${c}_min_khz" "$min"
        kv "cpu${c}_max_khz" "$max"
        kv "cpu${c}_cur_khz" "$(read_file "$f/scaling_cur_freq")"
        if [ "$min" != "$target" ] || [ "$max" != "$target" ]; then
            ok=0
            kv "cpu${c}_error" write_refused
        fi
    done
    kv locked "$ok"
    if [ "$ok" = 1 ]; then exit 0; fi
    kv reason write_failed
    exit 1
fi

# ---------------------------------------------------------------- unlock
if [ ! -f "$STATE" ]; then
    kv restored 0
    kv reason no_state
    exit 0
fi
ok=1
keep=""
while read -r name gov min max; do
    c=${name#cpu}
    case " $with_freq " in
        *" $c "*) ;;
        *)
            keep="$keep$name $gov $min $max
"
            continue
            ;;
    esac
    f="$CPU_DIR/cpu$c/cpufreq"
    # Governor first so it cannot re-clamp the limits; then min (now <= locked max), max.
    [ -n "$gov" ] && write_sys "$f/scaling_governor" "$gov"
    [ -n "$min" ] && write_sys "$f/scaling_min_freq" "$min"
    [ -n "$max" ] && write_sys "$f/scaling_max_freq" "$max"
    now_gov=$(read_file "$f/scaling_governor")
    now_min=$(read_file "$f/scaling_min_freq")
    now_max=$(read_file "$f/scaling_max_freq")
    kv "cpu${c}_governor" "$now_gov"
    kv "cpu${c}_min_khz" "$now_min"
    kv "cpu${c}_max_khz" "$now_max"
    if [ "$now_gov" != "$gov" ] || [ "$now_min" != "$min" ] || [ "$now_max" != "$max" ]; then
        ok=0
        kv "cpu${c}_error" restore_refused
    fi
done <"$STATE"
if [ -n "$keep" ]; then
    printf '%s' "$keep" >"$STATE"
else
    rm -f "$STATE"
fi
kv restored "$ok"
if [ "$ok" = 1 ]; then exit 0; fi
kv reason write_failed
exit 1
