#!/system/bin/sh
# freq_thermal.sh: one snapshot of CPU clocks and temperatures, one key=value per line.
# Usage: sh /data/local/tmp/freq_thermal.sh
# Taken before and after a benchmark to detect throttling without root. Self-contained
# (pushed alone), POSIX sh. SYSFS_ROOT/PROC_ROOT default to /sys and /proc.

SYS=${SYSFS_ROOT:-/sys}
PROC=${PROC_ROOT:-/proc}
CPU_DIR="$SYS/devices/system/cpu"
TAB=$(printf '\t')

kv() { printf '%s=%s\n' "$1" "$2"; }

read_file() {
    if [ -r "$1" ]; then
        head -n 1 "$1" 2>/dev/null | tr -d '\r'
    fi
}

mhz_to_khz() {  # "2596.148" -> "2596148" without awk/bc
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

# Time first, so it is closest to the moment the numbers below describe.
now_ns=$(date +%s%N 2>/dev/null)
case "$now_ns" in
    '' | *[!0-9]* | *N) ;;  # date without %N support
    *) kv time_ns "$now_ns" ;;
esac
if [ -r "$PROC/uptime" ]; then
    read -r up _rest <"$PROC/uptime"
    kv uptime_s "$up"
fi

# /proc/cpuinfo "cpu MHz" per processor, the fallback when cpufreq is absent.
cur=""
if [ -r "$PROC/cpuinfo" ]; then
    while IFS= read -r line; do
        key=${line%%:*}
        [ "$key" = "$line" ] && continue
        value=${line#*:}
        value=${value# }
        while :; do
            case "$key" in
                *" " | *"$TAB") key=${key%?} ;;
                *) break ;;
            esac
        done
        case "$key" in
            processor)
                case "$value" in
                    '' | *[!0-9]*) cur="" ;;
                    *) cur=$value ;;
                esac
                ;;
            "cpu MHz") [ -n "$cur" ] && eval "mhz_$cur=\$value" ;;
        esac
    done <"$PROC/cpuinfo"
fi

ncores=0
for d in "$CPU_DIR"/cpu[0-9]*; do
    [ -d "$d" ] && ncores=$((ncores + 1))
done
if [ "$ncores" -eq 0 ] && [ -r "$PROC/cpuinfo" ]; then
    ncores=$(grep -c '^processor' "$PROC/cpuinfo")
fi
kv ncores "$ncores"

n=0
while [ "$n" -lt "$ncores" ]; do
    khz=$(read_file "$CPU_DIR/cpu$n/cpufreq/scaling_cur_freq")
    source=cpufreq
    if [ -z "$khz" ]; then
        eval "mhz=\${mhz_$n:-}"
        khz=""
        [ -n "$mhz" ] && khz=$(mhz_to_khz "$mhz")
        source=proc_cpuinfo
        [ -z "$khz" ] && source=unknown
    fi
    [ -n "$khz" ] && kv "cpu${n}_cur_khz" "$khz"  # left out when unknown
    kv "cpu${n}_cur_khz_source" "$source"
    n=$((n + 1))
done

# Thermal zones: temp is usually millidegrees C; a zone may refuse reads (EINVAL/EPERM).
zones=0
for z in "$SYS"/class/thermal/thermal_zone*; do
    [ -d "$z" ] || continue
    id=${z##*thermal_zone}
    case "$id" in
        '' | *[!0-9]*) continue ;;
    esac
    type=$(read_file "$z/type")
    temp=$(read_file "$z/temp")
    case "$temp" in
        '' | *[!0-9-]*) temp=unknown ;;
    esac
    kv "zone${id}_type" "${type:-unknown}"
    kv "zone${id}_temp_mc" "$temp"
    zones=$((zones + 1))
done
kv thermal_zones "$zones"
