"""Runs and artifacts of the code interpreter go when they expire (the `code.expire` job)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from console.code_interpreter import artifacts, jobs
from console.models import CodeArtifact, CodeRun, CodeRunStatus
from tests.factories import make_sandbox_row

pytestmark = pytest.mark.django_db


def test_expired_runs_and_artifacts_are_removed(project, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    sandbox = make_sandbox_row(project)
    past, future = timezone.now() - timedelta(seconds=1), timezone.now() + timedelta(days=1)

    def run(status, expires_at):
        return CodeRun.objects.create(
            project=project, sandbox=sandbox, context_public_id="ctx_x", code="1",
            timeout_secs=5, status=status, expires_at=expires_at,
        )  # fmt: skip

    gone = run(CodeRunStatus.SUCCEEDED, past)
    still_running = run(CodeRunStatus.RUNNING, past)
    fresh = run(CodeRunStatus.FAILED, future)

    def artifact(expires_at):
        made = CodeArtifact.objects.create(
            project=project, sandbox=sandbox, context_public_id="ctx_x", kind="file",
            mime_type="text/plain", name="a.txt", size_bytes=1, sha256="0", expires_at=expires_at,
        )  # fmt: skip
        artifacts.stored_path(made).write_bytes(b"x")
        return made

    old, kept = artifact(past), artifact(future)
    old_file = artifacts.stored_path(old)

    jobs.expire()

    assert set(CodeRun.objects.values_list("pk", flat=True)) == {still_running.pk, fresh.pk}
    assert not CodeRun.objects.filter(pk=gone.pk).exists()
    assert list(CodeArtifact.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not old_file.exists() and artifacts.stored_path(kept).exists()


def test_runs_left_running_by_a_dead_server_are_marked_lost(project):
    sandbox = make_sandbox_row(project)
    long_ago = timezone.now() - timedelta(hours=2)
    lost = CodeRun.objects.create(
        project=project, sandbox=sandbox, context_public_id="ctx_x", code="1", timeout_secs=5,
        status=CodeRunStatus.RUNNING, created_at=long_ago,
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    current = CodeRun.objects.create(
        project=project, sandbox=sandbox, context_public_id="ctx_x", code="1", timeout_secs=5,
        status=CodeRunStatus.RUNNING, expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    jobs.expire()
    lost.refresh_from_db()
    current.refresh_from_db()
    assert (lost.status, lost.failure_reason) == (CodeRunStatus.FAILED, "lost")
    assert lost.completed_at is not None
    assert current.status == CodeRunStatus.RUNNING
