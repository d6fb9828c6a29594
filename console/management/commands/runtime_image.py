"""`manage.py runtime_image`: build the sandboxes' base image now (once per machine) and
say where it is; with isolation off or on a machine that cannot isolate, say why not."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Build (or find) the cached base image of isolated sandboxes"

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
        started = time.monotonic()
        image = driver.image()
        self.stdout.write(f"{image.name}: {image.rootfs} ({time.monotonic() - started:.1f} s)")
