"""`manage.py runtime_image [NAME ...] [--all]`: build the sandboxes' builtin images now
(once per machine; default `base`) and say where they are; with isolation off or on a
machine that cannot isolate, say why not."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Build (or find) the cached builtin images of isolated sandboxes"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="builtin images to build (default: base)")
        parser.add_argument("--all", action="store_true", help="every builtin image")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.RUNTIME_ISOLATION == "none":
            self.stdout.write("RUNTIME_ISOLATION=none: sandboxes use no image")
            return
        from console.runtime.isolated import IsolatedDriver

        driver = IsolatedDriver(
            settings.RUNTIME_ROOT,
            settings.RUNTIME_SUBNET,
            image_cache=settings.RUNTIME_IMAGE_CACHE,
            image_suite=settings.RUNTIME_IMAGE_SUITE,
            image_mirror=settings.RUNTIME_IMAGE_MIRROR,
            id_base=settings.RUNTIME_ID_BASE,
        )
        if driver.missing:
            raise CommandError("cannot isolate sandboxes here: " + "; ".join(driver.missing))
        from console.runtime.image import VARIANTS

        names = list(VARIANTS) if options["all"] else options["names"] or ["base"]
        unknown = [name for name in names if name not in VARIANTS]
        if unknown:
            raise CommandError(
                f"no builtin image {', '.join(unknown)}; there are: {', '.join(VARIANTS)}"
            )
        for name in names:
            started = time.monotonic()
            image = driver.image(name)
            self.stdout.write(f"{image.name}: {image.rootfs} ({time.monotonic() - started:.1f} s)")
