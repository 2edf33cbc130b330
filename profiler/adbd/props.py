"""Property table of the loopback device and the `getprop` shim that serves it."""
from __future__ import annotations

import os
import platform
import shlex
from pathlib import Path
from typing import Mapping


def host_cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The host CPU's name as /proc/cpuinfo gives it (truthful, not an Android SoC)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if fields.get(key):
            return fields[key]
    # aarch64 kernels often list only implementer/part ids.
    if "CPU implementer" in fields:
        return f"{platform.machine()} implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return platform.processor() or platform.machine() or "unknown"


def default_props(serialno: str) -> dict[str, str]:
    cpu = host_cpu_model()
    return {
        "ro.product.model": "Loopback",
        "ro.product.manufacturer": "mobilevit-nas",
        "ro.product.brand": "mobilevit-nas",
        "ro.product.device": "loopback",
        "ro.product.name": "loopback",
        "ro.board.platform": cpu,
        "ro.soc.model": cpu,
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.product.cpu.abi": "arm64-v8a" if platform.machine() in ("aarch64", "arm64") else "x86_64",
        "ro.serialno": serialno,
    }


def check_props(props: Mapping[str, str]) -> dict[str, str]:
    """Validate names/values: the shim's table is one `name=value` per line."""
    checked: dict[str, str] = {}
    for name, value in props.items():
        name, value = str(name), str(value)
        if not name or any(c in name for c in "=\n\r[]") or name != name.strip():
            raise ValueError(f"bad property name {name!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"property {name} has a newline in its value")
        checked[name] = value
    return checked


def parse_prop_assignment(text: str) -> tuple[str, str]:
    """`key=value` (CLI --prop) -> (key, value)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected key=value, got {text!r}")
    return name.strip(), value


def write_props_file(path: Path, props: Mapping[str, str]) -> None:
    """Replace the table atomically so a running getprop never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(props.items())), encoding="utf-8")
    os.replace(tmp, path)


# Plain sh so that a getprop call costs one fork, not a Python start-up.
_SHIM = """#!/bin/sh
# getprop shim of the loopback adb device: answers from its property table.
props={props}
if [ "$#" -eq 0 ]; then
  while IFS= read -r line; do
    printf '[%s]: [%s]\\n' "${{line%%=*}}" "${{line#*=}}"
  done < "$props"
  exit 0
fi
while IFS= read -r line; do
  if [ "${{line%%=*}}" = "$1" ]; then
    printf '%s\\n' "${{line#*=}}"
    exit 0
  fi
done < "$props"
printf '%s\\n' "${{2-}}"
"""


def write_getprop_shim(bin_dir: Path, props_file: Path) -> Path:
    shim = bin_dir / "getprop"
    shim.write_text(_SHIM.format(props=shlex.quote(str(props_file))), encoding="utf-8")
    shim.chmod(0o755)
    return shim
