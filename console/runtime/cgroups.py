"""Reading a sandbox's cgroup where its controllers are: cgroup v1 (one hierarchy per
controller, as on hybrid hosts) or cgroup v2 (one unified hierarchy).

crun creates the cgroup and writes the limits (config.json's resources); this module
only reads usage and OOM kills for metrics and lifecycle events.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def unified() -> bool:
    """Pure cgroup v2 (what crun uses when /sys/fs/cgroup itself is the v2 hierarchy)."""
    return (ROOT / "cgroup.controllers").exists()


def _v1(controller: str, path: str) -> Path:
    return ROOT / controller / path.strip("/")


def _v2(path: str) -> Path:
    return ROOT / path.strip("/")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def memory_bytes(path: str) -> int:
    if unified():
        return _read_int(_v2(path) / "memory.current") or 0
    return _read_int(_v1("memory", path) / "memory.usage_in_bytes") or 0


def cpu_seconds(path: str) -> float:
    if unified():
        usec = _keyed(_v2(path) / "cpu.stat", "usage_usec")
        return (usec or 0) / 1e6
    nsec = _read_int(_v1("cpuacct", path) / "cpuacct.usage")
    return (nsec or 0) / 1e9


def pids(path: str) -> list[int]:
    procs = _v2(path) / "cgroup.procs" if unified() else _v1("pids", path) / "cgroup.procs"
    try:
        return [int(p) for p in procs.read_text().split()]
    except OSError:
        return []


def oom_file(path: str) -> str:
    """The file whose `oom_kill N` line counts the cgroup's OOM kills."""
    if unified():
        return str(_v2(path) / "memory.events")
    return str(_v1("memory", path) / "memory.oom_control")


def exists(path: str) -> bool:
    return (_v2(path) if unified() else _v1("memory", path)).is_dir()


def leftovers(parent: str) -> list[str]:
    """Names of sandbox cgroups under `parent` (crun removes them on delete)."""
    base = _v2(parent) if unified() else _v1("memory", parent)
    try:
        return sorted(p.name for p in base.iterdir() if p.is_dir())
    except OSError:
        return []


def remove_parent(parent: str) -> None:
    """The instance's parent cgroup in every hierarchy, once it is empty."""
    bases = [_v2(parent)] if unified() else [p / parent.strip("/") for p in ROOT.iterdir()]
    for base in bases:
        try:
            base.rmdir()
        except OSError:
            pass
