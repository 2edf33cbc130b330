"""Device fingerprint (device_scripts/device_info.sh) and environment snapshots (freq_thermal.sh)."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from profiler.errors import FingerprintError, ParseError
from profiler.parsers.key_values import parse_key_values
from profiler.runners.push import push_if_changed
from profiler.targets import Target, remote_path, sh_quote

SCRIPTS = Path(__file__).resolve().parents[1] / "device_scripts"


@dataclass(frozen=True)
class Fingerprint:
    model: str
    manufacturer: str
    soc: str
    android_version: str
    abi: str
    kernel: str
    ncores: int
    core_max_khz: tuple[int, ...]
    governors: tuple[str, ...]
    rooted: bool
    hw_id: str = ""  # this physical unit: Android's ro.serialno, Linux's machine-id ("" where unreadable)

    def identity(self) -> dict:
        """The fields that identify one physical device and its software; the governor may change
        between runs. An OS update or another unit of the same model is another device."""
        d = asdict(self)
        d.pop("governors")
        d.pop("rooted")
        return d

    @property
    def hash(self) -> str:
        return _hash(self.identity())

    @property
    def legacy_hash(self) -> str:
        """The hash stores of schema 1 keyed devices by (it lacked hw_id); used only to migrate them."""
        d = self.identity()
        d.pop("hw_id")
        return _hash(d)

    def describe(self) -> str:
        return f"{self.manufacturer} {self.model}, {self.soc}, OS {self.android_version} [{self.hash}]"

    def fastest_cores_mask(self, n: int) -> str:
        """Hex affinity mask of the n fastest cores (ties: higher index, away from cpu0's interrupts)."""
        order = sorted(range(self.ncores), key=lambda i: (self.core_max_khz[i], i), reverse=True)
        mask = sum(1 << i for i in order[:max(1, min(n, self.ncores))])
        return format(mask, "x")


def _hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def run_script(target: Target, name: str) -> dict[str, str]:
    """Run one of device_scripts/ on the target; a non-zero exit or unparsable output is an error."""
    remote = remote_path(target, name)
    push_if_changed(target, SCRIPTS / name, remote, mode=0o755)
    res = target.shell(f"sh {sh_quote(remote)}")
    if res.exit_code != 0:
        tail = res.output.strip().splitlines()[-1:] or ["no output"]
        raise FingerprintError(f"{name} failed on {target.serial} (exit {res.exit_code}): {tail[0][:200]}")
    try:
        return parse_key_values(res.output)
    except ParseError as e:
        raise FingerprintError(f"{name} on {target.serial} printed something unreadable: {e}") from e


def _first(kv: dict[str, str], *names: str) -> str:
    for n in names:
        if kv.get(n):
            return kv[n]
    return "unknown"


def read_fingerprint(target: Target) -> Fingerprint:
    """The device's identity; raises FingerprintError naming what could not be read."""
    kv = run_script(target, "device_info.sh")
    try:
        ncores = int(kv.get("ncores", ""))
    except ValueError:
        ncores = 0
    if ncores < 1:
        raise FingerprintError(f"could not read the fingerprint of {target.serial}: device_info.sh reported "
                               f"ncores={kv.get('ncores', '(missing)')!r}, so no CPU mask can be chosen")
    fp = Fingerprint(
        model=_first(kv, "ro.product.model", "os_name"),
        manufacturer=_first(kv, "ro.product.manufacturer"),
        soc=_first(kv, "ro.soc.model", "ro.board.platform", "ro.hardware", "cpu_model"),
        android_version=_first(kv, "ro.build.version.release", "os_version"),
        abi=_first(kv, "ro.product.cpu.abi", "abi", "machine"),
        kernel=_first(kv, "kernel"),
        ncores=ncores,
        core_max_khz=tuple(int(float(kv.get(f"cpu{i}_max_khz", "0") or 0)) for i in range(ncores)),
        governors=tuple(kv.get(f"cpu{i}_governor", "unknown") for i in range(ncores)),
        rooted=kv.get("rooted") == "1",
        hw_id=kv.get("hw_id", ""),
    )
    unknown = [f for f in ("model", "soc", "abi") if getattr(fp, f) == "unknown"]
    if len(unknown) == 3:  # every such device would hash alike and share one entry in the store
        raise FingerprintError(f"could not read the fingerprint of {target.serial}: model, SoC and ABI are all "
                               "unknown (device_info.sh found neither getprop nor /proc/cpuinfo nor uname)")
    return fp


@dataclass(frozen=True)
class EnvSnapshot:
    cur_khz: dict[int, int]
    temps_c: dict[str, float]
    raw: dict[str, str]

    @property
    def max_temp_c(self) -> float | None:
        return max(self.temps_c.values()) if self.temps_c else None


def read_env(target: Target) -> EnvSnapshot:
    kv = run_script(target, "freq_thermal.sh")
    cur = {int(m.group(1)): int(float(v)) for k, v in kv.items() if (m := re.fullmatch(r"cpu(\d+)_cur_khz", k)) and v}
    temps: dict[str, float] = {}
    for k, v in kv.items():
        m = re.fullmatch(r"zone(\d+)_temp_mc", k)
        if m and v.lstrip("-").isdigit():
            temps[kv.get(f"zone{m.group(1)}_type", f"zone{m.group(1)}")] = int(v) / 1000.0
    return EnvSnapshot(cur, temps, kv)


def needs_cooldown(base: EnvSnapshot, now: EnvSnapshot, cores: list[int], temp_margin_c: float,
                   freq_drop: float) -> str | None:
    """Why the device has not returned to its baseline, or None when it has."""
    if base.max_temp_c is not None and now.max_temp_c is not None and now.max_temp_c > base.max_temp_c + temp_margin_c:
        return f"temperature {now.max_temp_c:.1f} C > baseline {base.max_temp_c:.1f} C + {temp_margin_c}"
    for c in cores:
        b, n = base.cur_khz.get(c), now.cur_khz.get(c)
        if b and n and n < b * (1 - freq_drop):
            return f"cpu{c} at {n} kHz < baseline {b} kHz"
    return None
