"""device_scripts/*.sh run with /bin/sh on this host, their key=value output parsed.

The host is a plain Linux box (no getprop, usually no cpufreq or thermal zones), which is
the fallback path of every script; the Android paths are exercised with fake /sys and
/proc trees through SYSFS_ROOT / PROC_ROOT.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

import pytest

from profiler.errors import ParseError
from profiler.parsers import parse_key_values

SCRIPTS = Path(__file__).resolve().parent.parent / "device_scripts"
SH = "/bin/sh"
HOST_CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").exists()
HOST_ZONES = sorted(Path("/sys/class/thermal").glob("thermal_zone*"))


def run_script(
    name: str, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [SH, str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )
    if check:
        assert proc.returncode == 0, f"{name} rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_kv(name: str, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    return parse_key_values(run_script(name, *args, env=env).stdout)


# ---------------------------------------------------------------- parse_key_values


def test_parse_key_values_basic() -> None:
    text = "a=1\n\n# comment\nro.product.model=Pixel 6 Pro\nexpr=x=y\r\n"
    assert parse_key_values(text) == {"a": "1", "ro.product.model": "Pixel 6 Pro", "expr": "x=y"}


@pytest.mark.parametrize("text", ["a=1\nnot a pair\n", "=1\n", "a=1\na=2\n", "a b=1\n"])
def test_parse_key_values_rejects_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_key_values(text)


# ---------------------------------------------------------------- scripts are plain POSIX sh


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_script_is_posix_sh(path: Path) -> None:
    subprocess.run([SH, "-n", str(path)], check=True, timeout=30)
    # Drop comments ("#" at line start or after a blank; ${x#y} stays).
    code = "\n".join(re.sub(r"(^|\s)#.*$", r"\1", line) for line in path.read_text().splitlines())
    bashisms = [r"\[\[", r"^\s*function\s", r"\$'", r"^\s*local\s", r"\bsource\s", r"\bseq\b",
                r"<<<", r"\$\{\w+\[", r"\becho -e\b", r"&>", r"\bdeclare\b", r"\$RANDOM"]
    for pattern in bashisms:
        assert not re.search(pattern, code, re.MULTILINE), f"{path.name}: {pattern}"


# ---------------------------------------------------------------- device_info.sh


def test_device_info_on_this_host() -> None:
    info = run_kv("device_info.sh")
    assert info["platform"] == "linux"
    assert info["getprop"] == "missing"
    assert int(info["ncores"]) == os.cpu_count()
    assert info["kernel"] == platform.release()
    assert info["machine"] == platform.machine()
    assert int(info["cpu0_max_khz"]) > 0
    assert info["cpu0_max_khz_source"] == ("cpufreq" if HOST_CPUFREQ else "proc_cpuinfo")
    assert info["rooted"] in {"0", "1"}
    assert info["rooted"] == ("1" if os.getuid() == 0 else info["rooted"])
    for n in range(int(info["ncores"])):
        assert f"cpu{n}_governor" in info and f"cpu{n}_part" in info
    if Path("/etc/os-release").exists():
        assert info["os_id"]


def test_device_info_android_like_tree(tmp_path: Path) -> None:
    # Big.LITTLE: cpufreq on cpu0-1, "CPU part" lines, no "cpu MHz" (ARM cpuinfo).
    cpu = tmp_path / "sys" / "devices" / "system" / "cpu"
    for n, khz in ((0, 1800000), (1, 2850000)):
        freq = cpu / f"cpu{n}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
        (freq / "scaling_governor").write_text("schedutil\n")
    (cpu / "cpu2").mkdir()
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text(
        "".join(
            f"processor\t: {n}\nBogoMIPS\t: 38.40\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
            for n, part in ((0, "0xd05"), (1, "0xd41"), (2, "0xd41"))
        )
        + "Hardware\t: Qualcomm Technologies, Inc SM8150\n"
    )
    info = run_kv("device_info.sh", env={"SYSFS_ROOT": str(tmp_path / "sys"), "PROC_ROOT": str(proc)})
    assert info["ncores"] == "3"
    assert info["cpu0_max_khz"] == "1800000" and info["cpu0_max_khz_source"] == "cpufreq"
    assert info["cpu1_max_khz"] == "2850000" and info["cpu1_governor"] == "schedutil"
    assert info["cpu1_part"] == "0xd41" and info["cpu0_part"] == "0xd05"
    assert "cpu2_max_khz" not in info and info["cpu2_max_khz_source"] == "unknown"
    assert info["cpu2_governor"] == "unknown"
    assert info["cpu_model"] == "Qualcomm Technologies, Inc SM8150"


# ---------------------------------------------------------------- freq_thermal.sh


def test_freq_thermal_on_this_host() -> None:
    before_ns = time.time_ns()
    snap = run_kv("freq_thermal.sh")
    assert int(snap["ncores"]) == os.cpu_count()
    assert int(snap["cpu0_cur_khz"]) > 0
    assert snap["cpu0_cur_khz_source"] in {"cpufreq", "proc_cpuinfo"}
    assert float(snap["uptime_s"]) > 0
    if "time_ns" in snap:
        assert abs(int(snap["time_ns"]) - before_ns) < 60e9
    assert int(snap["thermal_zones"]) == len(HOST_ZONES)
    if not HOST_ZONES:
        assert snap["thermal_zones"] == "0"


def test_freq_thermal_reads_zones(tmp_path: Path) -> None:
    for n, (kind, temp) in enumerate((("cpu-1-0-usr", "41200"), ("battery", "29000"))):
        zone = tmp_path / "class" / "thermal" / f"thermal_zone{n}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    snap = run_kv("freq_thermal.sh", env={"SYSFS_ROOT": str(tmp_path)})
    assert snap["thermal_zones"] == "2"
    assert snap["zone0_type"] == "cpu-1-0-usr" and int(snap["zone0_temp_mc"]) == 41200
    assert snap["zone1_type"] == "battery" and int(snap["zone1_temp_mc"]) == 29000


# ---------------------------------------------------------------- lock_clocks.sh


@pytest.mark.skipif(HOST_CPUFREQ and os.getuid() == 0, reason="would change this host's real clocks")
def test_lock_clocks_on_this_host_changes_nothing() -> None:
    result = run_kv("lock_clocks.sh", "lock")
    assert result["locked"] == "0"
    assert result["reason"] == ("no_cpufreq" if not HOST_CPUFREQ else "not_root")


def _fake_cpufreq(root: Path, ncpus: int) -> Path:
    for n in range(ncpus):
        freq = root / "devices" / "system" / "cpu" / f"cpu{n}" / "cpufreq"
        freq.mkdir(parents=True)
        for name, value in {
            "scaling_governor": "schedutil",
            "scaling_available_governors": "userspace powersave performance schedutil",
            "scaling_min_freq": "300000",
            "scaling_max_freq": "1800000",
            "cpuinfo_max_freq": "2400000",
            "scaling_cur_freq": "1200000",
        }.items():
            (freq / name).write_text(value + "\n")
    return root / "devices" / "system" / "cpu"


def test_lock_and_unlock_on_a_fake_cpufreq_tree(tmp_path: Path) -> None:
    cpu = _fake_cpufreq(tmp_path / "sys", 3)
    env = {"SYSFS_ROOT": str(tmp_path / "sys"), "LOCK_CLOCKS_STATE": str(tmp_path / "state")}
    locked = run_kv("lock_clocks.sh", "lock", "1-2", env=env)
    if os.getuid() != 0:
        assert locked["locked"] == "0" and locked["reason"] == "not_root"
        assert (cpu / "cpu1" / "cpufreq" / "scaling_governor").read_text().strip() == "schedutil"
        return
    assert locked["locked"] == "1"
    for n in (1, 2):
        assert locked[f"cpu{n}_governor"] == "performance"
        assert locked[f"cpu{n}_min_khz"] == locked[f"cpu{n}_max_khz"] == "2400000"
    assert "cpu0_governor" not in locked
    assert (cpu / "cpu0" / "cpufreq" / "scaling_governor").read_text().strip() == "schedutil"
    # A second lock must not record the locked values as "previous".
    run_kv("lock_clocks.sh", "lock", "1,2", env=env)
    restored = run_kv("lock_clocks.sh", "unlock", env=env)
    assert restored["restored"] == "1"
    for n in (1, 2):
        freq = cpu / f"cpu{n}" / "cpufreq"
        assert (freq / "scaling_governor").read_text().strip() == "schedutil"
        assert (freq / "scaling_min_freq").read_text().strip() == "300000"
        assert (freq / "scaling_max_freq").read_text().strip() == "1800000"
    assert not (tmp_path / "state").exists()
    again = run_kv("lock_clocks.sh", "unlock", env=env)
    assert again["restored"] == "0" and again["reason"] == "no_state"


def test_lock_clocks_rejects_bad_arguments() -> None:
    proc = run_script("lock_clocks.sh", "lock", "2-x", check=False)
    assert proc.returncode == 2
    assert parse_key_values(proc.stdout)["error"].startswith("bad_cpu_list")

