"""`manage.py runtime_layers gc [--dry-run] [--grace-hours N]`: remove the template layers
no build or sandbox of this database uses and unused for the grace period (default
LAYER_GC_GRACE_HOURS; when that is 0, collection is off and N must be given), printing each and the bytes freed (docs/templates.md
"Garbage collection"). `runtime_layers list` shows every layer, its size, last use and
whether this database references it."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.runtime import get_driver
from console.sandbox_templates import layer_gc


class Command(BaseCommand):
    help = "List or garbage-collect the template layers in the runtime's layer store"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["gc", "list"])
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would go; remove nothing"
        )
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            help="keep layers used this recently (default LAYER_GC_GRACE_HOURS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list()
            return
        grace = options["grace_hours"]
        if grace is None:
            grace = settings.LAYER_GC_GRACE_HOURS
            if grace <= 0:
                raise CommandError(
                    "collection is off here (LAYER_GC_GRACE_HOURS=0); "
                    "say how long to spare unused layers with --grace-hours N"
                )
        if grace < 0:
            raise CommandError("--grace-hours must be 0 or more")
        done = layer_gc.collect(grace, dry_run=options["dry_run"])
        if done is None:
            self.stdout.write("this runtime keeps no template layers (RUNTIME_ISOLATION=none)")
            return
        if done.locked:
            raise CommandError("another collector holds the layer store's lock; try again later")
        verb = "would remove" if options["dry_run"] else "removed"
        for layer_id, size in done.removed:
            self.stdout.write(f"{verb} {layer_id} ({size} bytes)")
        self.stdout.write(
            f"{verb} {len(done.removed)} layer(s), {done.bytes_freed} bytes; kept "
            f"{done.kept_referenced} referenced, {done.kept_recent} used recently"
        )

    def _list(self) -> None:
        store = getattr(get_driver(), "layer_store", None)
        if store is None:
            self.stdout.write("this runtime keeps no template layers (RUNTIME_ISOLATION=none)")
            return
        referenced = layer_gc.referenced_layers()
        now = time.time()
        for layer_id in store.ids():
            hours = (now - store.last_used(layer_id)) / 3600
            mark = "referenced" if layer_id in referenced else "unreferenced"
            self.stdout.write(
                f"{layer_id} {store.size(layer_id)} bytes, used {hours:.1f} h ago, {mark}"
            )
