"""Template builds as jobs (docs/jobs.md): one job per build, run once by a worker; a
worker that dies mid-build leaves the job to be reaped and run again from the plan.
Unused layers are collected hourly; every worker stamps the layers its sandboxes run on."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from console.jobs import every_process, periodic, task
from console.models import TemplateBuild
from console.sandbox_templates import engine, layer_gc
from console.sandbox_templates.models import BuildStatus

log = logging.getLogger(__name__)

KIND = "template.build"
# Past its time limit a build is cancelled by its own watcher; one still `building` this
# long after that lost its worker for good (its job's attempts are used up).
INTERRUPTED_AFTER = timedelta(minutes=10)


@task(KIND)
def build(payload: dict[str, Any]) -> None:
    engine.run(str(payload["build_id"]))


@periodic("template_build_interrupted", every=60)
def fail_interrupted() -> None:
    limit = timedelta(seconds=settings.TEMPLATE_BUILD_TIMEOUT_SECONDS) + INTERRUPTED_AFTER
    stale = TemplateBuild.objects.filter(
        status=BuildStatus.BUILDING, started_at__lt=timezone.now() - limit
    ).select_related("template__team")
    for row in stale[:100]:
        engine.fail_interrupted(row)


@periodic("template_layers_gc", every=3600)
def collect_layers() -> None:
    if settings.LAYER_GC_GRACE_HOURS <= 0:
        return  # collection turned off
    done = layer_gc.collect(settings.LAYER_GC_GRACE_HOURS)
    if done is not None and done.removed:
        log.info("removed %d template layer(s), %d bytes", len(done.removed), done.bytes_freed)


@every_process("template_layers_touch", every=3600)
def touch_live_layers() -> None:
    layer_gc.touch_live_layers()
