"""Template builds as jobs (docs/jobs.md): one job per build, run once by a worker; a
worker that dies mid-build leaves the job to be reaped and run again from the plan."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from console.jobs import periodic, task
from console.models import TemplateBuild
from console.sandbox_templates import engine
from console.sandbox_templates.models import BuildStatus

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
