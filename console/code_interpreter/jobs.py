"""The code interpreter's background work: background runs; expired artifacts and runs."""

from __future__ import annotations

from typing import Any

from console.code_interpreter import artifacts, runs
from console.jobs.registry import periodic, task


@task(runs.JOB_KIND)
def run(payload: dict[str, Any]) -> None:
    runs.run_job(payload)


@periodic("code.expire", every=3600)
def expire() -> None:
    artifacts.remove_expired()
    runs.fail_lost()
    runs.remove_expired()
