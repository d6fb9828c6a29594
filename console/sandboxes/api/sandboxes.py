"""/v1/sandboxes: create, list, get, kill, hibernate, resume, fork, timeout, metrics
(docs/api.md §2.1-2.3). The work is in console/sandboxes/service.py; these views parse and shape."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.api.errors import ApiError
from console.api.idempotency import idempotent
from console.api.listing import api_page, page_body
from console.models import LIVE_STATUSES, Sandbox, SandboxStatus
from console.paging import Keyset
from console.sandboxes import service as sandboxes
from console.warm_pools import checkout as warm_pool_checkout

KEYSET = Keyset("sandbox", "created_at")


def _present(body: dict[str, Any], key: str) -> Any:
    """The contract sends optional keys as null: treat null as absent."""
    return body.get(key)


def _create_args(request: ApiRequest) -> dict[str, Any]:
    body: dict[str, Any] = request.json
    action = _present(body, "timeout_action")
    lifecycle = _present(body, "lifecycle") or {}
    if not isinstance(lifecycle, dict):
        raise ApiError("invalid_request", "lifecycle must be an object")
    on_timeout = lifecycle.get("on_timeout")
    if on_timeout not in (None, "destroy", "pause"):
        raise ApiError("invalid_request", "lifecycle.on_timeout must be destroy or pause")
    if action is None and on_timeout is not None:
        action = "hibernate" if on_timeout == "pause" else "destroy"
    snapshot = None
    if snapshot_id := _present(body, "snapshot_id"):
        snapshot = sandboxes.get_snapshot(request.project, str(snapshot_id))
    internet = body.get("internet_access")
    return {
        "template": _present(body, "template") or ("base" if snapshot is None else None),
        "envs": _present(body, "envs"),
        "metadata": _present(body, "metadata"),
        "cwd": _present(body, "cwd"),
        "timeout_ms": _present(body, "timeout_ms"),
        "timeout_action": action,
        "auto_resume": bool(body.get("auto_resume")),
        "network": _present(body, "network"),
        "internet_access": True if internet is None else bool(internet),
        "vcpus": _present(body, "vcpus"),
        "memory_mb": _present(body, "memory_mb"),
        "disk_mb": _present(body, "disk_mb"),
        "snapshot": snapshot,
        "volumes": _present(body, "volumes"),
        "desktop": _present(body, "desktop"),
    }


@api_key_required(WRITE)
def create_sandbox(request: ApiRequest) -> JsonResponse:
    project = request.project

    def produce() -> tuple[int, Any]:
        args = _create_args(request)
        spec = _present(request.json, "warm_pool")
        if spec is not None:  # checkout from a warm pool (docs/warm-pools.md)
            sandbox, token, checkout = warm_pool_checkout.create(
                project, spec, actor=Actor.of(request), **args
            )
            body = sandboxes.sandbox_to_dict(sandbox, traffic_access_token=token)
            return 201, {**body, "warm_pool_checkout": checkout}
        sandbox, token = sandboxes.create_sandbox(project, actor=Actor.of(request), **args)
        return 201, sandboxes.sandbox_to_dict(sandbox, traffic_access_token=token)

    return idempotent(request, produce, on_replay=lambda body: _with_new_token(project, body))


def _with_new_token(project, body: Any) -> Any:
    sandbox = Sandbox.objects.filter(project=project, public_id=body.get("id")).first()
    if sandbox is None:
        return body
    return {**body, "traffic_access_token": sandboxes.reissue_traffic_token(sandbox)}


def _fields(request: ApiRequest) -> list[str] | None:
    raw = request.GET.get("fields")
    if raw is None:
        return None
    names = list(dict.fromkeys(f.strip() for f in raw.split(",") if f.strip()))
    unknown = [f for f in names if f not in sandboxes.SANDBOX_FIELDS]
    if unknown or not names:
        raise ApiError(
            "invalid_fields",
            f"Unknown field(s): {', '.join(unknown) or '(none given)'}",
            details={"allowed": list(sandboxes.SANDBOX_FIELDS)},
        )
    return names


def _project(body: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return body
    return {name: body.get(name) for name in fields}


@api_key_required(READ)
def list_sandboxes(request: ApiRequest) -> JsonResponse:
    fields = _fields(request)
    rows = (
        Sandbox.objects.filter(project=request.project)
        .visible()
        .select_related("pause_snapshot")
        .prefetch_related("volume_attachments__volume")
    )
    states = [s.strip() for s in request.GET.get("state", "").split(",") if s.strip()]
    bad = [s for s in states if s not in SandboxStatus.values]
    if bad:
        raise ApiError(
            "invalid_request",
            f"Unknown state(s): {', '.join(bad)}; use {', '.join(SandboxStatus.values)}",
        )
    rows = rows.filter(status__in=states or [*LIVE_STATUSES, SandboxStatus.ERROR])
    if template := request.GET.get("template"):
        rows = rows.filter(template=template)
    for key, value in sandboxes.metadata_filter(request.GET.get("metadata")).items():
        rows = rows.filter(**{f"metadata__{key}": value})
    page = api_page(request, rows, KEYSET)
    return JsonResponse(page_body(page, lambda s: _project(sandboxes.sandbox_to_dict(s), fields)))


@api_key_required(READ)
def get_sandbox(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    fields = _fields(request)
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    return JsonResponse(_project(sandboxes.sandbox_to_dict(sandbox), fields))


@api_key_required(WRITE)
def kill_sandbox(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    # Killing is idempotent: a gone sandbox answers destroyed again (GET says not found).
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id, include_gone=True)
    sandbox = sandboxes.destroy_sandbox(sandbox, actor=Actor.of(request))
    return JsonResponse({"id": sandbox.public_id, "status": sandbox.status})


@api_key_required(WRITE)
def hibernate_sandbox(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    snapshot = sandboxes.pause_sandbox(sandbox, actor=Actor.of(request))
    return JsonResponse(sandboxes.snapshot_to_dict(snapshot))


@api_key_required(WRITE)
def resume_sandbox(request: ApiRequest, ref: str) -> JsonResponse:
    sandbox = sandboxes.resume_sandbox(request.project, ref, actor=Actor.of(request))
    return JsonResponse(sandboxes.sandbox_to_dict(sandbox))


@api_key_required(WRITE)
def fork_sandbox(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)

    def produce() -> tuple[int, Any]:
        child, token = sandboxes.fork_sandbox(sandbox, actor=Actor.of(request))
        return 201, sandboxes.sandbox_to_dict(child, traffic_access_token=token)

    return idempotent(
        request, produce, on_replay=lambda body: _with_new_token(sandbox.project, body)
    )


@api_key_required(WRITE)
def set_timeout(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    body = request.json
    if body.get("timeout_ms") is None:
        raise ApiError("invalid_request", "timeout_ms is required")
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    sandbox = sandboxes.set_timeout(
        sandbox,
        body["timeout_ms"],
        body.get("timeout_action"),
        actor=Actor.of(request),
    )
    info = sandboxes.sandbox_to_dict(sandbox)
    remaining = None
    if sandbox.timeout_at is not None:
        from django.utils import timezone

        remaining = max(0, int((sandbox.timeout_at - timezone.now()).total_seconds() * 1000))
    return JsonResponse(
        {
            "timeout_ms": sandbox.timeout_ms,
            "timeout_action": sandbox.timeout_action,
            "timeout_at": info["timeout_at"],
            "remaining_ms": remaining,
        }
    )


@api_key_required(READ)
def sandbox_metrics(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    if sandbox.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED):
        sandboxes.require_running(sandbox)
    return JsonResponse([sandboxes.metrics_to_dict(sandbox)], safe=False)


_base = "sandboxes/<str:sandbox_id>/"
urlpatterns = [
    path("sandboxes", methods(GET=list_sandboxes, POST=create_sandbox), name="v1-sandboxes"),
    path(
        "sandboxes/<str:sandbox_id>",
        methods(GET=get_sandbox, DELETE=kill_sandbox),
        name="v1-sandbox",
    ),
    path(_base + "hibernate", methods(POST=hibernate_sandbox), name="v1-sandbox-hibernate"),
    path("sandboxes/<str:ref>/resume", methods(POST=resume_sandbox), name="v1-sandbox-resume"),
    path(_base + "fork", methods(POST=fork_sandbox), name="v1-sandbox-fork"),
    path(_base + "timeout", methods(POST=set_timeout), name="v1-sandbox-timeout"),
    path(_base + "metrics", methods(GET=sandbox_metrics), name="v1-sandbox-metrics"),
]
