"""Garbage collection of template layers (docs/templates.md "Garbage collection").

A layer is kept while any build of this database lists it (whatever the build's status:
a sandbox on it, a snapshot restored over it or a later `--from-template` build needs
it), while a sandbox of this server runs or is paused on it (the runtime's own record,
which outlives a build row), and for the grace period after its last use (a build in
progress about to reuse it, or another server sharing the cache). The store removes
the rest, one layer at a time, under its lock (console/runtime/layer_store.py)."""

from __future__ import annotations

from console.models import TemplateBuild
from console.runtime import get_driver
from console.runtime.layer_store import Collection


def referenced_layers() -> set[str]:
    """Every layer this database or this server's runtime still needs."""
    wanted: set[str] = set()
    for layers in TemplateBuild.objects.values_list("layers", flat=True).iterator():
        wanted.update(layers or ())
    wanted.update(get_driver().layers_in_use())
    return wanted


def collect(grace_hours: float, *, dry_run: bool = False) -> Collection | None:
    """Remove the collectable layers (None: this runtime keeps no layers). The caller
    says the grace period: LAYER_GC_GRACE_HOURS=0 means "never collect", not "no grace"."""
    return get_driver().collect_layers(referenced_layers(), grace_hours * 3600, dry_run=dry_run)


def touch_live_layers() -> None:
    """Stamp the layers under this server's sandboxes as used now, so that another server
    sharing the cache (another database) sees them in use however long they run."""
    driver = get_driver()
    for layer_id in driver.layers_in_use():
        driver.touch_layer(layer_id)
