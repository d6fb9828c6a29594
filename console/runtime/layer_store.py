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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from console.runtime.base import RuntimeError_

LAYER_ID = re.compile(r"^[0-9a-f]{16,64}$")
# overlayfs takes its options in one page: this many lower layers of our path length fit.
MAX_STACK = 40


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

    def remove(self, layer_id: str) -> None:
        target = self.root / _check(layer_id)
        if not target.exists():
            return
        trash = self.root / f".{layer_id}.{os.getpid()}.{time.monotonic_ns()}.rm"
        try:
            os.rename(target, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total
