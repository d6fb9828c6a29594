"""The sandbox runtime: a driver interface and the drivers behind it.

`get_driver()` returns the configured driver (one per process). Nothing outside
this package knows how a sandbox is run; callers hold only sandbox ids.
"""

from __future__ import annotations

import functools

from django.conf import settings

from console.runtime.base import Driver, RuntimeError_  # noqa: F401


@functools.cache
def get_driver() -> Driver:
    name = settings.RUNTIME_DRIVER
    if name == "local":
        from console.runtime.local import LocalDriver

        return LocalDriver(
            root=settings.RUNTIME_ROOT,
            subnet=settings.RUNTIME_SUBNET,
            netns=settings.RUNTIME_NETNS,
            max_output_bytes=settings.EXEC_OUTPUT_MAX_BYTES,
        )
    raise RuntimeError_(f"unknown RUNTIME_DRIVER {name!r}")
