"""Template layers: what one build step changed, kept as a directory a sandbox's overlay
stacks under its own writable layer (docs/templates.md).

    <image cache>/layers/<id>/root/     the step's writable layer (overlay upper dir)
    <image cache>/layers/<id>/layer.json

A layer is the upper directory of the sandbox that ran the step, copied as it is:
owners in the sandbox id range, the overlay's whiteouts (character devices 0/0) and
opaque-directory marks (trusted.overlay.* attributes) included, so that as a lower
layer it removes what the step removed. Ids are given by the caller (the build
engine keys them by parent and step inputs); the store only checks their shape.
Layers live beside the builtin images, outside DATA_DIR, so every server and test run
on the machine shares them like it shares the images.

Garbage collection (docs/templates.md "Garbage collection"): a `last_used` stamp in a
layer's directory is touched whenever a build reuses the layer or a sandbox starts on
it; `collect` removes, under an flock on the layers directory (servers sharing the cache
take turns), layers outside the caller's referenced set whose last use is older than
the grace period. Which layers are referenced is the caller's (the database's) to say.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from console.runtime.base import RuntimeError_

LAYER_ID = re.compile(r"^[0-9a-f]{16,64}$")
# overlayfs takes its options in one page: this many lower layers of our path length fit.
MAX_STACK = 40
STAMP = "last_used"
LOCK = ".gc.lock"


@dataclass
class Collection:
    """What one `collect` did (or, dry, would do): (id, bytes) removed, and what it kept."""

    removed: list[tuple[str, int]] = field(default_factory=list)
    kept_referenced: int = 0
    kept_recent: int = 0
    locked: bool = False  # another collector holds the lock: nothing was looked at

    @property
    def bytes_freed(self) -> int:
        return sum(size for _id, size in self.removed)


def _check(layer_id: str) -> str:
    if not LAYER_ID.fullmatch(layer_id):
        raise RuntimeError_(f"bad layer id {layer_id!r}", code="invalid_request")
    return layer_id


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, layer_id: str) -> Path:
        return self.root / _check(layer_id) / "root"

    def exists(self, layer_id: str) -> bool:
        return (self.root / _check(layer_id) / "layer.json").is_file()

    def size(self, layer_id: str) -> int:
        meta = self.root / _check(layer_id) / "layer.json"
        try:
            return int(json.loads(meta.read_text()).get("bytes", 0))
        except (OSError, ValueError):
            return 0

    def capture(self, upper: Path, layer_id: str) -> int:
        """Copy `upper` in as layer `layer_id` (atomically: a half copy is never a layer);
        return its size in bytes. An existing layer of that id is kept as it is."""
        final = self.root / _check(layer_id)
        if self.exists(layer_id):
            return self.size(layer_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        work = self.root / f".{layer_id}.{os.getpid()}.{time.monotonic_ns()}"
        work.mkdir()
        try:
            result = subprocess.run(
                ["cp", "-a", "--reflink=auto", str(upper), str(work / "root")],
                capture_output=True,
                text=True,
                timeout=3600,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            )
            if result.returncode != 0:
                raise RuntimeError_(f"capturing layer {layer_id}: {result.stderr.strip()[-400:]}")
            size = _tree_bytes(work / "root")
            (work / "layer.json").write_text(json.dumps({"bytes": size, "at": time.time()}))
            try:
                os.rename(work, final)
            except OSError:
                if not self.exists(layer_id):  # not another build storing the same layer
                    raise
            return size
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def ids(self) -> list[str]:
        """Every complete layer in the store (work and trash directories start with '.')."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if LAYER_ID.fullmatch(entry.name) and (entry / "layer.json").is_file()
        )

    def touch(self, layer_id: str) -> None:
        """Stamp the layer as used now (a build reused it, a sandbox starts on it)."""
        try:
            (self.root / _check(layer_id) / STAMP).touch()
        except OSError:
            pass  # a layer that is gone is refused by whoever needs it

    def last_used(self, layer_id: str) -> float:
        """When the layer was last used: its stamp, else when it was made."""
        place = self.root / _check(layer_id)
        for name in (STAMP, "layer.json"):
            try:
                return (place / name).stat().st_mtime
            except OSError:
                continue
        return 0.0

    def collect(
        self, referenced: set[str], grace_seconds: float, *, dry_run: bool = False
    ) -> Collection:
        """Remove the layers not in `referenced` and unused for `grace_seconds`; with the
        lock held by another collector, do nothing and say so."""
        done = Collection()
        if not self.root.is_dir():
            return done
        with open(self.root / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                done.locked = True
                return done
            for layer_id in self.ids():
                if layer_id in referenced:
                    done.kept_referenced += 1
                    continue
                # Read again just before removing: a build may have reused it meanwhile.
                if time.time() - self.last_used(layer_id) < grace_seconds:
                    done.kept_recent += 1
                    continue
                size = self.size(layer_id)
                if dry_run or self.remove(layer_id):
                    done.removed.append((layer_id, size))
            if not dry_run:
                for leftover in self.root.glob(".*.rm"):  # a collector that died mid-rmtree
                    shutil.rmtree(leftover, ignore_errors=True)
        return done

    def remove(self, layer_id: str) -> bool:
        """Take the layer out at once (a rename), then delete it; whether it was there."""
        target = self.root / _check(layer_id)
        if not target.exists():
            return False
        trash = self.root / f".{layer_id}.{os.getpid()}.{time.monotonic_ns()}.rm"
        try:
            os.rename(target, trash)
        except OSError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total
