"""Console agent deployment pages on database rows (the runs themselves are exercised by the
real CLI in test_cli_agents.py): list and its empty state, a deployment's versions, runs and
services, a run with its log, input, outputs and the server-sent log stream; another
project's deployment is a 404, viewers cannot stop or restart, CSRF is enforced."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import Client
from django.urls import reverse

from console.models import (
    AgentDeployment,
    AgentLogEvent,
    AgentRun,
    AgentService,
    AgentVersion,
)

pytestmark = pytest.mark.django_db


def url(name, project, **kwargs):
    return reverse(
        name, kwargs={"team_slug": project.team.slug, "project_slug": project.slug, **kwargs}
    )


@pytest.fixture
def job(project):
    deployment = AgentDeployment.objects.create(project=project, name="report-job", mode="job")
    version = AgentVersion.objects.create(
        deployment=deployment,
        number=1,
        status="ready",
        bundle_digest="a" * 64,
        manifest={"entries": []},
        config={"mode": "job", "entrypoint": "python3 main.py", "outputs": {"paths": ["out.txt"]}},
        bundle_size=4096,
        file_count=3,
        cache_status="disabled",
    )
    AgentDeployment.objects.filter(pk=deployment.pk).update(active_version=version)
    deployment.refresh_from_db()
    return deployment


@pytest.fixture
def finished_run(job, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    run = AgentRun.objects.create(
        deployment=job,
        version=job.active_version,
        status="succeeded",
        input={"topic": "quarterly numbers"},
        sandbox_public_id="sb_gone12345678",
        exit_code=0,
        outputs=[
            {
                "configured_path": "out.txt",
                "path": "/workspace/project/out.txt",
                "name": "out.txt",
                "kind": "file",
                "status": "available",
                "size_bytes": 6,
                "store_key": "0",
            }
        ],
    )
    store = tmp_path / "agents" / "outputs" / run.public_id
    store.mkdir(parents=True)
    (store / "0").write_bytes(b"hello\n")
    for message in ("job started", "job finished"):
        AgentLogEvent.objects.create(
            deployment=job, run=run, event_type="output", source="stdout", message=message
        )
    return run


def test_empty_list_shows_the_exact_cli_commands(viewer_client, project):
    page = viewer_client.get(url("agent-list", project))
    assert page.status_code == 200
    text = page.content.decode()
    assert "No agent deployments yet" in text
    for command in (
        "nullspace agent init",
        "nullspace agent deploy",
        "nullspace agent url &lt;name&gt;",
    ):
        assert command in text
    assert "export NULLSPACE_API_URL=http://testserver" in text


def test_list_and_deployment_page(viewer_client, project, job, finished_run):
    listing = viewer_client.get(url("agent-list", project)).content.decode()
    assert "report-job" in listing and "v1" in listing
    page = viewer_client.get(url("agent-detail", project, deployment_id=job.public_id))
    text = page.content.decode()
    assert page.status_code == 200
    assert "4.0\xa0KB" in text and "aaaaaaaaaaaa" in text and "badge-active" in text
    assert finished_run.public_id in text and "Succeeded" in text
    assert "disabled" in text  # the cache state


def test_run_page_shows_log_input_outputs_and_sandbox(viewer_client, project, job, finished_run):
    run_url = url("agent-run", project, deployment_id=job.public_id, run_id=finished_run.public_id)
    text = viewer_client.get(run_url).content.decode()
    assert "job started" in text and "job finished" in text
    assert "quarterly numbers" in text
    assert "sb_gone12345678" in text and 'data-live="0"' in text
    download = url(
        "agent-run-output",
        project,
        deployment_id=job.public_id,
        run_id=finished_run.public_id,
        index=0,
    )
    assert download in text
    response = viewer_client.get(download)
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"hello\n"
    assert viewer_client.get(download.replace("/0/", "/1/")).status_code == 404


@pytest.mark.django_db(transaction=True)  # the stream reads from its own thread
def test_log_stream_sends_events_after_the_cursor_then_ends(
    viewer_client, project, job, finished_run
):
    first = AgentLogEvent.objects.filter(run=finished_run).order_by("id").first()
    stream_url = url(
        "agent-run-log", project, deployment_id=job.public_id, run_id=finished_run.public_id
    )
    response = viewer_client.get(stream_url, {"after": first.pk})
    assert response["Content-Type"] == "text/event-stream"

    async def collect() -> str:
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    body = asyncio.run(collect())
    assert "job finished" in body and "job started" not in body
    assert "event: end" in body and '"status": "succeeded"' in body
    data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith('data: {"id"')]
    assert [event["message"] for event in data] == ["job finished"]


def test_other_projects_deployment_is_404(
    outsider_client, other_project, project, job, finished_run
):
    assert (
        outsider_client.get(url("agent-detail", project, deployment_id=job.public_id)).status_code
        == 404
    )
    # Another project's id under the outsider's own project is not found either.
    assert (
        outsider_client.get(
            url("agent-detail", other_project, deployment_id=job.public_id)
        ).status_code
        == 404
    )
    assert (
        outsider_client.get(
            url(
                "agent-run",
                other_project,
                deployment_id=job.public_id,
                run_id=finished_run.public_id,
            )
        ).status_code
        == 404
    )


@pytest.fixture
def service(project):
    deployment = AgentDeployment.objects.create(project=project, name="web", mode="service")
    version = AgentVersion.objects.create(
        deployment=deployment,
        number=1,
        status="ready",
        bundle_digest="b" * 64,
        manifest={"entries": []},
        config={
            "mode": "service",
            "entrypoint": "python3 server.py",
            "service": {"port": 8080},
            "env": {"required": ["API_TOKEN"], "optional": []},
        },
        bundle_path="/nonexistent.tar",
    )
    AgentDeployment.objects.filter(pk=deployment.pk).update(active_version=version)
    return AgentService.objects.create(
        deployment=deployment, version=version, port=8080, status="failed", failure_reason="x"
    )


def test_service_page_shows_its_recent_log(viewer_client, project, service):
    AgentLogEvent.objects.create(
        deployment=service.deployment, service=service, event_type="output", source="stdout",
        message="listening on 0.0.0.0:8080",
    )  # fmt: skip
    page = viewer_client.get(
        url("agent-detail", project, deployment_id=service.deployment.public_id)
    )
    text = page.content.decode()
    assert "listening on 0.0.0.0:8080" in text
    assert f"nullspace agent logs web --service {service.public_id} --follow" in text


def test_viewer_cannot_stop_or_restart(viewer_client, project, service):
    for name in ("agent-service-stop", "agent-service-restart"):
        target = url(
            name, project, deployment_id=service.deployment.public_id, service_id=service.public_id
        )
        assert viewer_client.post(target).status_code == 403


def test_restart_without_stored_env_values_explains_the_cli(member_client, project, service):
    target = url(
        "agent-service-restart",
        project,
        deployment_id=service.deployment.public_id,
        service_id=service.public_id,
    )
    page = member_client.post(target, follow=True)
    text = page.content.decode()
    assert "missing required env vars: API_TOKEN" in text
    assert "nullspace agent restart web --env NAME=value" in text
    service.refresh_from_db()
    assert service.status == "failed" and service.generation == 0


def test_stop_requires_csrf(owner, project, service):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    target = url(
        "agent-service-stop",
        project,
        deployment_id=service.deployment.public_id,
        service_id=service.public_id,
    )
    assert client.post(target).status_code == 403


def test_member_stops_a_service(member_client, project, service):
    target = url(
        "agent-service-stop",
        project,
        deployment_id=service.deployment.public_id,
        service_id=service.public_id,
    )
    response = member_client.post(target, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="agent-services"' in response.content.decode()
    service.refresh_from_db()
    assert service.status == "stopped"
    assert AgentLogEvent.objects.filter(service=service, event_type="service_stopped").exists()
