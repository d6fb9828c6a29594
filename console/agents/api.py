"""/v1/agent-deployments (docs/api.md §6.3): deployments, versions and bundles, runs, services,
logs, outputs. The work is in console/agents/; these views parse and shape."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import path

from console.agents import deployments, logs, outputs, runs, services, shapes
from console.agents.models import (
    DeploymentMode,
    DeploymentStatus,
    RunStatus,
    ServiceStatus,
    VersionStatus,
)
from console.api.auth import RAW_BODY, READ, WRITE, ApiRequest, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.api.idempotency import idempotent
from console.models import AgentDeployment, AgentRun, AgentService, AgentVersion

DEFAULT_PAGE = 50
URL_WAIT_SECONDS = 20
MAX_PAGE = 200


# --- paging ---------------------------------------------------------------------------------


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(f"ad:{pk}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, pk = raw.partition(":")
        if kind != "ad":
            raise ValueError
        return int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError("invalid_request", "cursor is not one this server gave out") from None


def _page(
    request: ApiRequest, rows: QuerySet[Any], shape: Callable[[Any], dict[str, Any]]
) -> JsonResponse:
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    if cursor := request.GET.get("cursor"):
        rows = rows.filter(pk__lt=_decode(cursor))
    page = list(rows.order_by("-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return JsonResponse(
        {
            "items": [shape(row) for row in page],
            "next_cursor": _encode(page[-1].pk) if more else None,
        }
    )


def _choice(request: ApiRequest, name: str, allowed: list[str]) -> str | None:
    value = request.GET.get(name) or None
    if value is not None and value not in allowed:
        raise ApiError("invalid_request", f"{name} must be one of {', '.join(allowed)}")
    return value


def _deployment(request: ApiRequest, deployment_id: str) -> AgentDeployment:
    return deployments.get_deployment(request.project, deployment_id)


def _idem_key(request: ApiRequest) -> str:
    return (request.headers.get("Idempotency-Key") or "").strip()[:200]


# --- deployments ----------------------------------------------------------------------------


@api_key_required(READ)
def list_deployments(request: ApiRequest) -> JsonResponse:
    rows = AgentDeployment.objects.filter(project=request.project).select_related("active_version")
    if mode := _choice(request, "mode", DeploymentMode.values):
        rows = rows.filter(mode=mode)
    status = _choice(request, "status", DeploymentStatus.values)
    rows = rows.filter(status=status) if status else rows.exclude(status=DeploymentStatus.DELETED)
    return _page(request, rows, shapes.deployment_to_dict)


@api_key_required(WRITE)
def create_deployment(request: ApiRequest) -> JsonResponse:
    body: dict[str, Any] = request.json

    def produce() -> tuple[int, Any]:
        deployment = deployments.create_deployment(
            request.project,
            name=body.get("name"),
            mode=body.get("mode"),
            description=body.get("description"),
            metadata=body.get("metadata"),
        )
        return 201, shapes.deployment_to_dict(deployment)

    return idempotent(request, produce)


@api_key_required(READ)
def get_deployment(request: ApiRequest, deployment_id: str) -> JsonResponse:
    return JsonResponse(shapes.deployment_to_dict(_deployment(request, deployment_id)))


@api_key_required(WRITE)
def update_deployment(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)
    body: dict[str, Any] = request.json
    if body.get("status") == DeploymentStatus.DELETED:
        deployments.delete_deployment(deployment)
        deployment.refresh_from_db()
        return JsonResponse(shapes.deployment_to_dict(deployment))
    fields: dict[str, Any] = {}
    if (name := body.get("name")) is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > deployments.MAX_NAME:
            raise ApiError("invalid_request", "name must be a non-empty string")
        fields["name"] = name
    if (description := body.get("description")) is not None:
        if not isinstance(description, str) or len(description) > 2000:
            raise ApiError(
                "invalid_request", "description must be a string of at most 2000 characters"
            )
        fields["description"] = description
    if (metadata := body.get("metadata")) is not None:
        if not isinstance(metadata, dict):
            raise ApiError("invalid_request", "metadata must be a JSON object")
        fields["metadata"] = metadata
    if (status := body.get("status")) is not None:
        if status not in (DeploymentStatus.ACTIVE, DeploymentStatus.PAUSED):
            raise ApiError("invalid_request", "status must be active, paused or deleted")
        fields["status"] = status
    if (version_id := body.get("active_version_id")) is not None:
        version = deployments.get_version(deployment, str(version_id))
        if not version.bundle_path:
            raise ApiError("invalid_request", f"version {version.public_id} has no uploaded bundle")
        fields["active_version"] = version
    from django.db import IntegrityError

    try:
        for key, value in fields.items():
            setattr(deployment, key, value)
        deployment.save()
    except IntegrityError:
        raise ApiError("conflict", "another live deployment has this name") from None
    return JsonResponse(shapes.deployment_to_dict(deployment))


@api_key_required(WRITE)
def delete_deployment(request: ApiRequest, deployment_id: str) -> HttpResponse:
    deployments.delete_deployment(_deployment(request, deployment_id))
    return HttpResponse(status=204)


# --- versions -------------------------------------------------------------------------------


def _version_shape(version: AgentVersion) -> dict[str, Any]:
    return shapes.version_to_dict(version)


@api_key_required(WRITE)
def create_version(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)
    body: dict[str, Any] = request.json

    def produce() -> tuple[int, Any]:
        version = deployments.create_version(
            deployment,
            bundle_digest=body.get("bundle_digest"),
            manifest=body.get("bundle_manifest"),
            config=body.get("config"),
            cache_policy=body.get("cache_policy"),
        )
        return 201, _version_shape(version)

    return idempotent(request, produce)


@api_key_required(READ)
def list_versions(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)
    rows = AgentVersion.objects.filter(deployment=deployment).select_related(
        "deployment", "artifact"
    )
    if status := _choice(request, "status", VersionStatus.values):
        rows = rows.filter(status=status)
    return _page(request, rows, _version_shape)


@api_key_required(READ)
def get_version(request: ApiRequest, deployment_id: str, version_id: str) -> JsonResponse:
    version = deployments.get_version(_deployment(request, deployment_id), version_id)
    return JsonResponse(_version_shape(version))


@api_key_required(WRITE, body=RAW_BODY)
def upload_bundle(request: ApiRequest, deployment_id: str, version_id: str) -> JsonResponse:
    version = deployments.get_version(_deployment(request, deployment_id), version_id)
    content_type = (request.content_type or "").lower()
    if content_type not in ("application/x-tar", "application/octet-stream"):
        raise ApiError(
            "invalid_request", "the bundle must be sent as Content-Type: application/x-tar"
        )
    length_header = request.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None

    def produce() -> tuple[int, Any]:
        accepted = deployments.accept_bundle(
            version,
            request,
            length=length,
            header_digest=(request.headers.get("X-Nullspace-Bundle-Digest") or "").strip(),
        )
        return 200, _version_shape(accepted)

    return idempotent(request, produce)


# --- runs -------------------------------------------------------------------------------------


def _run(deployment: AgentDeployment, run_id: str) -> AgentRun:
    run = (
        AgentRun.objects.select_related("deployment", "version")
        .filter(deployment=deployment, public_id=run_id)
        .first()
    )
    if run is None:
        raise ApiError("not_found", f"Run {run_id} not found in {deployment.public_id}")
    return run


@api_key_required(WRITE)
def create_run(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)

    def produce() -> tuple[int, Any]:
        run = deployments.create_run(deployment, request.json, _idem_key(request))
        return 201, shapes.run_to_dict(run)

    return idempotent(request, produce)


@api_key_required(READ)
def list_runs(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)
    rows = AgentRun.objects.filter(deployment=deployment).select_related("deployment", "version")
    if status := _choice(request, "status", RunStatus.values):
        rows = rows.filter(status=status)
    if version_id := request.GET.get("version_id"):
        rows = rows.filter(version__public_id=version_id)
    return _page(request, rows, shapes.run_to_dict)


@api_key_required(READ)
def get_run(request: ApiRequest, deployment_id: str, run_id: str) -> JsonResponse:
    return JsonResponse(shapes.run_to_dict(_run(_deployment(request, deployment_id), run_id)))


@api_key_required(WRITE)
def cancel_run(request: ApiRequest, deployment_id: str, run_id: str) -> JsonResponse:
    run = _run(_deployment(request, deployment_id), run_id)
    reason = request.json.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError("invalid_request", "reason must be a string")
    return JsonResponse(shapes.run_to_dict(runs.cancel(run, (reason or "")[:200] or None)))


def _log_args(request: ApiRequest) -> dict[str, Any]:
    tail = request.GET.get("tail")
    return {
        "offset": query_int(request, "offset", 0, 0, 10_000_000),
        "limit": query_int(request, "limit", 100, 1, 1000),
        "cursor": request.GET.get("cursor") or None,
        "tail": query_int(request, "tail", 100, 1, 1000) if tail not in (None, "") else None,
    }


@api_key_required(READ)
def run_logs(request: ApiRequest, deployment_id: str, run_id: str) -> JsonResponse:
    run = _run(_deployment(request, deployment_id), run_id)
    return JsonResponse(logs.page(run, **_log_args(request)))


def output_download_path(run: AgentRun, index: int) -> str:
    return f"/v1/agent-deployments/{run.deployment.public_id}/runs/{run.public_id}/outputs/{index}"


@api_key_required(READ)
def run_outputs(request: ApiRequest, deployment_id: str, run_id: str) -> JsonResponse:
    run = _run(_deployment(request, deployment_id), run_id)
    return JsonResponse(
        {
            "run_id": run.public_id,
            "output_manifest": shapes.output_manifest(run),
            "outputs": [
                outputs.public(entry, output_download_path(run, i))
                for i, entry in enumerate(run.outputs or [])
            ],
        }
    )


@api_key_required(READ)
def download_output(
    request: ApiRequest, deployment_id: str, run_id: str, index: int
) -> HttpResponseBase:
    """Not in the 0.1.9 client: the kept copy of one output, after the sandbox is gone."""
    run = _run(_deployment(request, deployment_id), run_id)
    found = outputs.stored_file(run, index)
    if found is None:
        raise ApiError("not_found", f"Run {run.public_id} has no kept output #{index}")
    path, entry = found
    return FileResponse(path.open("rb"), as_attachment=True, filename=entry.get("name") or "output")


# --- services -----------------------------------------------------------------------------


def _service(deployment: AgentDeployment, service_id: str) -> AgentService:
    service = (
        AgentService.objects.select_related("deployment", "version", "grant__sandbox")
        .filter(deployment=deployment, public_id=service_id)
        .first()
    )
    if service is None:
        raise ApiError("not_found", f"Service {service_id} not found in {deployment.public_id}")
    return service


def _service_shape(service: AgentService) -> dict[str, Any]:
    return shapes.service_to_dict(service, services.public_url(service))


@api_key_required(WRITE)
def create_service(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)

    def produce() -> tuple[int, Any]:
        service = deployments.create_service(deployment, request.json, _idem_key(request))
        return 201, _service_shape(service)

    return idempotent(request, produce)


@api_key_required(READ)
def list_services(request: ApiRequest, deployment_id: str) -> JsonResponse:
    deployment = _deployment(request, deployment_id)
    rows = AgentService.objects.filter(deployment=deployment).select_related(
        "deployment", "version", "grant__sandbox"
    )
    if status := _choice(request, "status", ServiceStatus.values):
        rows = rows.filter(status=status)
    if version_id := request.GET.get("version_id"):
        rows = rows.filter(version__public_id=version_id)
    return _page(request, rows, _service_shape)


@api_key_required(READ)
def get_service(request: ApiRequest, deployment_id: str, service_id: str) -> JsonResponse:
    return JsonResponse(_service_shape(_service(_deployment(request, deployment_id), service_id)))


@api_key_required(WRITE)
def stop_service(request: ApiRequest, deployment_id: str, service_id: str) -> JsonResponse:
    service = _service(_deployment(request, deployment_id), service_id)
    body: dict[str, Any] = request.json
    retain = body.get("retain_sandbox")
    if retain is not None and not isinstance(retain, bool):
        raise ApiError("invalid_request", "retain_sandbox must be true or false")
    reason = body.get("reason")
    service = services.stop(
        service, reason=reason if isinstance(reason, str) else None, retain_sandbox=bool(retain)
    )
    return JsonResponse(_service_shape(service))


@api_key_required(WRITE)
def restart_service(request: ApiRequest, deployment_id: str, service_id: str) -> JsonResponse:
    service = _service(_deployment(request, deployment_id), service_id)
    service = deployments.restart_service(service, request.json)
    return JsonResponse(_service_shape(service))


@api_key_required(READ)
def service_logs(request: ApiRequest, deployment_id: str, service_id: str) -> JsonResponse:
    service = _service(_deployment(request, deployment_id), service_id)
    return JsonResponse(logs.page(service, **_log_args(request)))


@api_key_required(READ)
def service_url(request: ApiRequest, deployment_id: str, service_id: str) -> JsonResponse:
    service = _service(_deployment(request, deployment_id), service_id)
    # `agent url` starts a service and asks at once: give a starting one a bounded wait.
    deadline = time.monotonic() + URL_WAIT_SECONDS
    while service.status == ServiceStatus.STARTING and time.monotonic() < deadline:
        time.sleep(0.2)
        service.refresh_from_db()
    return JsonResponse(
        {
            "service_id": service.public_id,
            "status": service.status,
            "public_url": services.public_url(service, issue=True),
            "port": service.port,
        }
    )


_d = "agent-deployments/<str:deployment_id>"
urlpatterns = [
    path(
        "agent-deployments",
        methods(GET=list_deployments, POST=create_deployment),
        name="v1-agent-deployments",
    ),
    path(
        _d,
        methods(GET=get_deployment, PATCH=update_deployment, DELETE=delete_deployment),
        name="v1-agent-deployment",
    ),
    path(
        _d + "/versions", methods(GET=list_versions, POST=create_version), name="v1-agent-versions"
    ),
    path(_d + "/versions/<str:version_id>", methods(GET=get_version), name="v1-agent-version"),
    path(
        _d + "/versions/<str:version_id>/bundle",
        methods(PUT=upload_bundle),
        name="v1-agent-version-bundle",
    ),
    path(_d + "/runs", methods(GET=list_runs, POST=create_run), name="v1-agent-runs"),
    path(_d + "/runs/<str:run_id>", methods(GET=get_run), name="v1-agent-run"),
    path(_d + "/runs/<str:run_id>/cancel", methods(POST=cancel_run), name="v1-agent-run-cancel"),
    path(_d + "/runs/<str:run_id>/logs", methods(GET=run_logs), name="v1-agent-run-logs"),
    path(_d + "/runs/<str:run_id>/outputs", methods(GET=run_outputs), name="v1-agent-run-outputs"),
    path(
        _d + "/runs/<str:run_id>/outputs/<int:index>",
        methods(GET=download_output),
        name="v1-agent-run-output",
    ),
    path(
        _d + "/services", methods(GET=list_services, POST=create_service), name="v1-agent-services"
    ),
    path(_d + "/services/<str:service_id>", methods(GET=get_service), name="v1-agent-service"),
    path(
        _d + "/services/<str:service_id>/stop",
        methods(POST=stop_service),
        name="v1-agent-service-stop",
    ),
    path(
        _d + "/services/<str:service_id>/restart",
        methods(POST=restart_service),
        name="v1-agent-service-restart",
    ),
    path(
        _d + "/services/<str:service_id>/logs",
        methods(GET=service_logs),
        name="v1-agent-service-logs",
    ),
    path(
        _d + "/services/<str:service_id>/url", methods(GET=service_url), name="v1-agent-service-url"
    ),
]
