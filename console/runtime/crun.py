"""Running Debian's crun (an OCI runtime in C) for the sandboxes of one driver instance.

crun creates the namespaces, maps ids, pivots into the root filesystem, applies the
capability set, seccomp filter and rlimits, and manages the sandbox's cgroup (cgroups
v1 or v2, with the limits of config.json) and freezer (pause/resume).

One wrinkle: crun 1.8 refuses hybrid hosts whose cgroup v2 hierarchy still offers a
controller (here: hugetlb). `hidden_unified_argv` runs crun in a private mount namespace
where /sys/fs/cgroup/unified is unmounted, so crun sees a plain cgroup v1 host, which it
supports fully. On pure v1 or pure v2 hosts crun runs as is.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from console.runtime.base import RuntimeError_

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = CGROUP_ROOT / "unified"
TMPFS_MAGIC = 0x01021994


@functools.cache
def hybrid_with_v2_controllers() -> bool:
    """/sys/fs/cgroup is v1 (tmpfs of controllers) with a v2 hierarchy offering controllers."""
    try:
        if not os.path.ismount(UNIFIED):
            return False
        return bool((UNIFIED / "cgroup.controllers").read_text().split())
    except OSError:
        return False


def available() -> str | None:
    """None when crun can run here, else what is missing."""
    if shutil.which("crun") is None:
        return "crun is not installed (apt-get install crun)"
    if hybrid_with_v2_controllers() and shutil.which("unshare") is None:
        return "unshare (util-linux) is needed to run crun on this hybrid cgroup host"
    return None


class Crun:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir  # crun's --root: this instance's container states

    def argv(self, *args: str) -> list[str]:
        base = ["crun", "--root", str(self.state_dir), *args]
        if not hybrid_with_v2_controllers():
            return base
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'umount -l {UNIFIED} && exec "$@"',
            "crun",
            *base,
        ]

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> str:
        try:
            result = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/",
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError_(f"crun {args[0]} did not answer in {timeout:.0f} s") from exc
        if check and result.returncode != 0:
            raise RuntimeError_(f"crun {args[0]}: {result.stderr.strip()[-500:]}")
        return result.stdout

    def start(self, container_id: str, bundle: Path) -> None:
        """Run the sandbox's init detached. Its stdio is /dev/null (a pipe would be held
        open by it for good); crun's own errors go to a log file."""
        log_file = bundle / "crun.log"
        argv = self.argv("--log", f"file:{log_file}", "run", "--detach", "--bundle", str(bundle))
        try:
            code = subprocess.run(
                [*argv, container_id],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                cwd="/",
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError_("crun run did not answer in 60 s") from exc
        if code != 0:
            try:
                detail = log_file.read_text().strip().splitlines()[-1]
            except (OSError, IndexError):
                detail = f"exit {code}"
            raise RuntimeError_(f"crun run: {detail[-500:]}")

    def pause(self, container_id: str) -> None:
        self.run("pause", container_id)

    def resume(self, container_id: str, *, check: bool = True) -> None:
        self.run("resume", container_id, check=check)

    def kill(self, container_id: str) -> None:
        self.run("kill", "--all", container_id, "KILL", check=False)

    def delete(self, container_id: str) -> None:
        self.run("delete", "--force", container_id, check=False)

    def init_pid(self, container_id: str) -> int | None:
        """The host pid of the sandbox's pid 1, while it runs."""
        try:
            text = (self.state_dir / container_id / "status").read_text()
        except OSError:
            return None
        try:
            pid = int(json.loads(text).get("pid") or 0)
        except (ValueError, AttributeError):
            return None
        return pid or None

    def exists(self, container_id: str) -> bool:
        return (self.state_dir / container_id).is_dir()

    def known(self) -> list[str]:
        if not self.state_dir.is_dir():
            return []
        return sorted(p.name for p in self.state_dir.iterdir() if p.is_dir())
