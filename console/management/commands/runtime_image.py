"""`manage.py runtime_image [NAME ...] [--all] [--suite S ...] [--jobs N]`: build the
sandboxes' builtin images now (once per machine; default `base` on RUNTIME_IMAGE_SUITE)
and say where they are; with isolation off or on a machine that cannot isolate, say why
not. Builds are independent mmdebstrap runs, so `--jobs` runs several side by side (CI
does: they wait on the archive and on the disk more than on a core)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Build (or find) the cached builtin images of isolated sandboxes"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="builtin images to build (default: base)")
        parser.add_argument("--all", action="store_true", help="every builtin image")
        parser.add_argument(
            "--suite",
            action="append",
            help="Debian suite(s) to build `base` on as well (templates build on bookworm "
            "and trixie); default RUNTIME_IMAGE_SUITE only",
        )
        parser.add_argument("--jobs", type=int, default=1, help="builds run side by side")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.RUNTIME_ISOLATION == "none":
            self.stdout.write("RUNTIME_ISOLATION=none: sandboxes use no image")
            return
        from console.runtime.image import VARIANTS
        from console.runtime.isolated import IsolatedDriver

        def driver_on(suite: str) -> IsolatedDriver:
            return IsolatedDriver(
                settings.RUNTIME_ROOT,
                settings.RUNTIME_SUBNET,
                image_cache=settings.RUNTIME_IMAGE_CACHE,
                image_suite=suite,
                image_mirror=settings.RUNTIME_IMAGE_MIRROR,
                id_base=settings.RUNTIME_ID_BASE,
            )

        driver = driver_on(settings.RUNTIME_IMAGE_SUITE)
        if driver.missing:
            raise CommandError("cannot isolate sandboxes here: " + "; ".join(driver.missing))
        names = list(VARIANTS) if options["all"] else options["names"] or ["base"]
        unknown = [name for name in names if name not in VARIANTS]
        if unknown:
            raise CommandError(
                f"no builtin image {', '.join(unknown)}; there are: {', '.join(VARIANTS)}"
            )
        wanted = [(driver, name) for name in names]
        for suite in options["suite"] or ():
            if suite != settings.RUNTIME_IMAGE_SUITE:
                wanted.append((driver_on(suite), "base"))

        def build(item: tuple[IsolatedDriver, str]) -> str:
            on, name = item
            started = time.monotonic()
            image = on.image(name)
            return f"{image.name} ({on.image_suite}): {image.rootfs} ({time.monotonic() - started:.1f} s)"

        with ThreadPoolExecutor(max_workers=max(1, options["jobs"])) as pool:
            for line in pool.map(build, wanted):
                self.stdout.write(line)
