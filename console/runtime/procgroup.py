"""Every process of one sandbox, found and acted on together (pause, resume, kill, usage).

With a writable cgroup v2 hierarchy each sandbox gets its own cgroup: freezing it is a
real pause, `cgroup.kill` ends daemonised children too, `cpu.stat` counts CPU time.
Without one we fall back to signals over the processes that carry the sandbox's marker
environment variable or live in its network namespace.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

MARKER_VAR = "NULLSPACE_RUNTIME_MARK"


def cgroup2_mount() -> Path | None:
    """Where a writable cgroup v2 hierarchy is mounted, if any."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            path = Path(parts[1])
            if os.access(path, os.W_OK) and (path / "cgroup.procs").exists():
                return path
    return None


def marker(tag: str, sandbox_id: str) -> str:
    return f"{tag}:{sandbox_id}"


def _marked_pids(mark: str) -> list[int]:
    needle = f"{MARKER_VAR}={mark}\0".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if needle in fh.read() + b"\0":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


class ProcGroup:
    def __init__(
        self,
        cgroup: Path | None,
        mark: str,
        extra_pids: Callable[[], list[int]] = lambda: [],
    ) -> None:
        self.cgroup = cgroup
        self.mark = mark
        self.extra_pids = extra_pids  # e.g. the pids inside the sandbox's netns

    def create(self) -> None:
        if self.cgroup is None:
            return
        for _ in range(5):
            try:
                self.cgroup.mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                continue  # the instance's parent cgroup was removed as we made it
        self.cgroup.mkdir(parents=True, exist_ok=True)

    @property
    def procs_file(self) -> str | None:
        return str(self.cgroup / "cgroup.procs") if self.cgroup is not None else None

    def pids(self) -> list[int]:
        found: set[int] = set()
        if self.cgroup is not None and self.cgroup.exists():
            for path in self.cgroup.rglob("cgroup.procs"):
                try:
                    found.update(int(p) for p in path.read_text().split())
                except OSError:
                    continue
        else:
            found.update(_marked_pids(self.mark))
            found.update(self.extra_pids())
        found.discard(os.getpid())
        return sorted(found)

    def freeze(self, frozen: bool) -> None:
        if self.cgroup is not None and self.cgroup.exists():
            (self.cgroup / "cgroup.freeze").write_text("1" if frozen else "0")
            want = f"frozen {1 if frozen else 0}"
            deadline = time.monotonic() + 2
            while (
                time.monotonic() < deadline
                and want not in (self.cgroup / "cgroup.events").read_text()
            ):
                time.sleep(0.005)
            return
        # Signals: repeat until no new process appears (a process may fork meanwhile).
        done: set[int] = set()
        for _ in range(20):
            pids = [p for p in self.pids() if p not in done]
            if not pids:
                return
            _signal(pids, signal.SIGSTOP if frozen else signal.SIGCONT)
            done.update(pids)

    def kill_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        if self.cgroup is not None and self.cgroup.exists():
            kill_file = self.cgroup / "cgroup.kill"
            if kill_file.exists():
                kill_file.write_text("1")
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                break
            _signal(pids, signal.SIGKILL)
            _signal(pids, signal.SIGCONT)
            time.sleep(0.01)
        if self.cgroup is not None and self.cgroup.exists():
            # Children first; a cgroup can be removed once nothing runs in it.
            for path in sorted(self.cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir():
                    _rmdir(path)
            _rmdir(self.cgroup)
        if self.cgroup is not None:
            try:
                self.cgroup.parent.rmdir()  # the instance's parent, once its last sandbox went
            except OSError:
                pass

    def cpu_seconds(self) -> float:
        if self.cgroup is not None and self.cgroup.exists():
            for line in (self.cgroup / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        return sum(_cpu_ticks(pid) for pid in self.pids()) / os.sysconf("SC_CLK_TCK")

    def memory_bytes(self) -> int:
        if self.cgroup is not None and (self.cgroup / "memory.current").exists():
            return int((self.cgroup / "memory.current").read_text())
        page = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * page
            except OSError:
                continue
        return total


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # still populated for a moment after cgroup.kill
