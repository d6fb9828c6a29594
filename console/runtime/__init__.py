"""The sandbox runtime: a driver interface and the drivers behind it.

`get_driver()` returns the configured driver (one per process). Nothing outside
this package knows how a sandbox is run; callers hold only sandbox ids.
"""

from __future__ import annotations

import functools
import logging

from console.runtime.base import Driver, RuntimeError_  # noqa: F401

log = logging.getLogger(__name__)


@functools.cache
def get_driver() -> Driver:
    from django.conf import settings  # the runtime's own modules do not need Django

    name = settings.RUNTIME_DRIVER
    if name != "local":
        raise RuntimeError_(f"unknown RUNTIME_DRIVER {name!r}")
    if settings.RUNTIME_ISOLATION == "none":
        from console.runtime.local import LocalDriver

        log.warning(
            "RUNTIME_ISOLATION=none: sandboxes run as processes on this host and can reach "
            "its files, processes and services; use it only on a machine you trust"
        )
        return LocalDriver(
            root=settings.RUNTIME_ROOT,
            subnet=settings.RUNTIME_SUBNET,
            netns=settings.RUNTIME_NETNS,
            max_output_bytes=settings.EXEC_OUTPUT_MAX_BYTES,
        )
    from console.runtime.isolated import IsolatedDriver

    driver = IsolatedDriver(
        settings.RUNTIME_ROOT,
        settings.RUNTIME_SUBNET,
        image_cache=settings.RUNTIME_IMAGE_CACHE,
        image_suite=settings.RUNTIME_IMAGE_SUITE,
        image_mirror=settings.RUNTIME_IMAGE_MIRROR,
        id_base=settings.RUNTIME_ID_BASE,
        disk_mb=settings.SANDBOX_DEFAULT_DISK_MB,
        pids_limit=settings.SANDBOX_PIDS_LIMIT,
        open_files=settings.SANDBOX_OPEN_FILES,
        ubuntu_mirror=settings.RUNTIME_UBUNTU_MIRROR,
        max_output_bytes=settings.EXEC_OUTPUT_MAX_BYTES,
        layer_dir=settings.RUNTIME_LAYER_DIR,
    )
    if driver.missing:
        log.error(
            "sandboxes cannot be isolated here (missing %s); creates will be refused",
            "; ".join(driver.missing),
        )
    return driver
