"""/v1/sandboxes/{id}/snapshots and /v1/snapshots (docs/api.md §7.1). SnapshotInfo is STRICT."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.api.idempotency import idempotent
from console.api.listing import api_page, page_body, wants_page, whole_list
from console.models import Snapshot
from console.paging import Keyset
from console.sandboxes import service as sandboxes

KEYSET = Keyset("snapshot", "created_at")


@api_key_required(WRITE)
def create_snapshot(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)

    def produce() -> tuple[int, Any]:
        snapshot = sandboxes.snapshot_sandbox(sandbox, actor=Actor.of(request))
        return 201, sandboxes.snapshot_to_dict(snapshot)

    return idempotent(request, produce)


def _listed(request: ApiRequest, sandbox_public_id: str | None) -> JsonResponse:
    """A bare list (contract 7.1) of every snapshot, or keyset pages when asked for."""
    rows = Snapshot.objects.filter(project=request.project)
    if sandbox_public_id:
        rows = rows.filter(sandbox_public_id=sandbox_public_id)
    for key, value in sandboxes.metadata_filter(request.GET.get("metadata")).items():
        rows = rows.filter(**{f"metadata__{key}": value})
    if wants_page(request):
        return JsonResponse(page_body(api_page(request, rows, KEYSET), sandboxes.snapshot_to_dict))
    found = whole_list(rows, KEYSET, what="snapshots")
    return JsonResponse([sandboxes.snapshot_to_dict(s) for s in found], safe=False)


@api_key_required(READ)
def sandbox_snapshots(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)
    return _listed(request, sandbox.public_id)


@api_key_required(READ)
def list_snapshots(request: ApiRequest) -> JsonResponse:
    return _listed(request, request.GET.get("sandbox_id"))


@api_key_required(READ)
def get_snapshot(request: ApiRequest, snapshot_id: str) -> JsonResponse:
    snapshot = sandboxes.get_snapshot(request.project, snapshot_id)
    return JsonResponse(sandboxes.snapshot_to_dict(snapshot))


@api_key_required(WRITE)
def delete_snapshot(request: ApiRequest, snapshot_id: str) -> HttpResponse:
    snapshot = sandboxes.get_snapshot(request.project, snapshot_id)
    sandboxes.delete_snapshot(snapshot)
    return HttpResponse(status=204)


urlpatterns = [
    path(
        "sandboxes/<str:sandbox_id>/snapshots",
        methods(GET=sandbox_snapshots, POST=create_snapshot),
        name="v1-sandbox-snapshots",
    ),
    path("snapshots", methods(GET=list_snapshots), name="v1-snapshots"),
    path(
        "snapshots/<str:snapshot_id>",
        methods(GET=get_snapshot, DELETE=delete_snapshot),
        name="v1-snapshot",
    ),
]
