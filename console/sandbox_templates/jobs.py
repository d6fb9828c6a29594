"""Template builds as jobs (docs/jobs.md): one job per build, run once by a worker; a
worker that dies mid-build leaves the job to be reaped and run again from the plan."""

from __future__ import annotations

from typing import Any

from console.jobs import task
from console.sandbox_templates import engine

KIND = "template.build"


@task(KIND)
def build(payload: dict[str, Any]) -> None:
    engine.run(str(payload["build_id"]))
