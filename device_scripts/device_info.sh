#!/system/bin/sh
# device_info.sh: static facts about the device, one key=value per line.
# Usage: sh /data/local/tmp/device_info.sh
# POSIX sh (Android mksh/toybox, dash, busybox). SYSFS_ROOT/PROC_ROOT default to /sys and
# /proc; they exist so tests can point the script at a fake tree.

SYS=${SYSFS_ROOT:-/sys}
PROC=${PROC_ROOT:-/proc}
CPU_DIR="$SYS/devices/system/cpu"

kv() { printf '%s=%s\n' "$1" "$2"; }

# Strip CR and keep the first line: values must stay on one line.
one_line() { printf '%s' "$1" | tr -d '\r' | head -n 1; }

read_file() {  # read_file PATH -> first line, or nothing
    if [ -r "$1" ]; then
        head -n 1 "$1" 2>/dev/null | tr -d '\r'
    fi
}

# ---------------------------------------------------------------- identity
if command -v getprop >/dev/null 2>&1; then
    kv platform android
    for prop in ro.product.model ro.product.manufacturer ro.board.platform ro.soc.model \
        ro.hardware ro.build.version.release ro.build.version.sdk ro.product.cpu.abi; do
        kv "$prop" "$(one_line "$(getprop "$prop" 2>/dev/null)")"
    done
    # This physical unit (an adb serial is only an address: USB and Wi-Fi differ for one phone).
    hw_id=$(one_line "$(getprop ro.serialno 2>/dev/null)")
    [ -n "$hw_id" ] || hw_id=$(one_line "$(getprop ro.boot.serialno 2>/dev/null)")
    kv hw_id "$hw_id"
else
    kv platform linux
    kv getprop missing
    if [ -r /etc/os-release ]; then
        while IFS='=' read -r key value; do
            value=${value#\"}
            value=${value%\"}
            case "$key" in
                ID) kv os_id "$value" ;;
                PRETTY_NAME) kv os_name "$value" ;;
                VERSION_ID) kv os_version "$value" ;;
            esac
        done </etc/os-release
    fi
    kv hw_id "$(read_file /etc/machine-id)$( [ -r /etc/machine-id ] || read_file /var/lib/dbus/machine-id)"
fi
kv machine "$(uname -m 2>/dev/null || echo unknown)"
kv kernel "$(uname -r 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- /proc/cpuinfo per processor
# Collected into mhz_N / part_N variables (N is validated as digits before eval).
TAB=$(printf '\t')
cur=""
model_name=""
if [ -r "$PROC/cpuinfo" ]; then
    while IFS= read -r line; do
        key=${line%%:*}
        value=${line#*:}
        [ "$key" = "$line" ] && continue
        while :; do  # trim trailing blanks without forking (cpuinfo can be long)
            case "$key" in
                *" " | *"$TAB") key=${key%?} ;;
                *) break ;;
            esac
        done
        value=${value# }
        case "$key" in
            processor)
                case "$value" in
                    '' | *[!0-9]*) cur="" ;;
                    *) cur=$value ;;
                esac
                ;;
            "cpu MHz") [ -n "$cur" ] && eval "mhz_$cur=\$value" ;;
            "CPU part") [ -n "$cur" ] && eval "part_$cur=\$value" ;;
            "model name" | Hardware) [ -z "$model_name" ] && model_name=$value ;;
        esac
    done <"$PROC/cpuinfo"
fi
[ -n "$model_name" ] && kv cpu_model "$model_name"

# "2596.148" MHz -> "2596148" kHz, with shell string ops only (toybox may lack awk/bc).
mhz_to_khz() {
    int=${1%%.*}
    case "$1" in
        *.*) frac=${1#*.} ;;
        *) frac="" ;;
    esac
    frac="${frac}000"
    frac=${frac%"${frac#???}"}
    khz="$int$frac"
    while [ "${khz#0}" != "$khz" ] && [ "${#khz}" -gt 1 ]; do khz=${khz#0}; done
    case "$khz" in
        '' | *[!0-9]*) return 1 ;;
    esac
    printf '%s' "$khz"
}

# ---------------------------------------------------------------- cores
# Count present cpuN directories (offline big cores included); fall back to cpuinfo.
ncores=0
for d in "$CPU_DIR"/cpu[0-9]*; do
    [ -d "$d" ] && ncores=$((ncores + 1))
done
if [ "$ncores" -eq 0 ] && [ -r "$PROC/cpuinfo" ]; then
    ncores=$(grep -c '^processor' "$PROC/cpuinfo")
fi
kv ncores "$ncores"
online=$(read_file "$CPU_DIR/online")
kv cpus_online "${online:-unknown}"

n=0
while [ "$n" -lt "$ncores" ]; do
    freq="$CPU_DIR/cpu$n/cpufreq"
    max=$(read_file "$freq/cpuinfo_max_freq")
    if [ -n "$max" ]; then
        kv "cpu${n}_max_khz" "$max"
        kv "cpu${n}_max_khz_source" cpufreq
    else
        eval "mhz=\${mhz_$n:-}"
        khz=""
        [ -n "$mhz" ] && khz=$(mhz_to_khz "$mhz")
        if [ -n "$khz" ]; then
            kv "cpu${n}_max_khz" "$khz"
            kv "cpu${n}_max_khz_source" proc_cpuinfo
        else  # no value: the key is left out rather than given a fake number
            kv "cpu${n}_max_khz_source" unknown
        fi
    fi
    gov=$(read_file "$freq/scaling_governor")
    kv "cpu${n}_governor" "${gov:-unknown}"
    eval "part=\${part_$n:-}"
    kv "cpu${n}_part" "${part:-unknown}"
    state=$(read_file "$CPU_DIR/cpu$n/online")
    kv "cpu${n}_online" "${state:-unknown}"
    n=$((n + 1))
done

# ---------------------------------------------------------------- root
# uid 0, or a su that answers within 3 s without a prompt (stdin closed). Without
# `timeout` su is not tried at all: some su builds wait for a user to allow the request.
rooted=0
root_via=none
if [ "$(id -u 2>/dev/null)" = "0" ]; then
    rooted=1
    root_via=uid
elif command -v su >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
    if timeout 3 su -c id </dev/null 2>/dev/null | grep -q 'uid=0'; then
        rooted=1
        root_via=su
    fi
fi
kv rooted "$rooted"
kv root_via "$root_via"
