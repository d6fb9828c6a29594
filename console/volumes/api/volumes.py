"""/v1/volumes: create, list, get (by id or name), delete, attachments, and the volume's
files, uploads and signed URLs (docs/api.md §5). The work is in
console/volumes/service.py; the files routes are the same views as a sandbox's
(console/sandboxes/api/files.py) over the volume's file tree.
"""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.api.errors import ApiError
from console.api.fields import project_fields, requested_fields
from console.models import LIVE_STATUSES, Volume
from console.sandboxes.api.owners import VOLUME
from console.sandboxes.api.uploads import upload_urlpatterns
from console.sandboxes.service import get_sandbox
from console.volumes import service as volumes
from console.volumes.api.files import volume_file_urlpatterns


def _fields(request: ApiRequest) -> list[str] | None:
    return requested_fields(request, volumes.VOLUME_FIELDS)


@api_key_required(WRITE)
def create_volume(request: ApiRequest) -> JsonResponse:
    volume = volumes.create_volume(
        request.project,
        request.json.get("name"),
        actor=Actor.of(request),
    )
    return JsonResponse(volumes.volume_to_dict(volume, mount_count=0), status=201)


@api_key_required(READ)
def list_volumes(request: ApiRequest) -> JsonResponse:
    fields = _fields(request)
    rows = Volume.objects.filter(project=request.project).annotate(
        live_mounts=Count("attachments", filter=Q(attachments__sandbox__status__in=LIVE_STATUSES))
    )
    return JsonResponse(
        [
            project_fields(volumes.volume_to_dict(v, mount_count=v.live_mounts), fields)
            for v in rows
        ],
        safe=False,
    )


@api_key_required(READ)
def get_volume(request: ApiRequest, volume_id: str) -> JsonResponse:
    fields = _fields(request)
    volume = volumes.get_volume(request.project, volume_id)
    return JsonResponse(project_fields(volumes.volume_to_dict(volume), fields))


@api_key_required(READ)
def get_volume_by_name(request: ApiRequest, name: str) -> JsonResponse:
    fields = _fields(request)
    volume = volumes.get_volume_by_name(request.project, name)
    return JsonResponse(project_fields(volumes.volume_to_dict(volume), fields))


@api_key_required(WRITE)
def delete_volume(request: ApiRequest, volume_id: str) -> HttpResponse:
    force = (request.GET.get("force") or "").lower()
    if force not in ("", "true", "false", "1", "0"):
        raise ApiError("invalid_request", "`force` must be true or false")
    volume = volumes.get_volume(request.project, volume_id)
    volumes.delete_volume(volume, force=force in ("true", "1"))
    return HttpResponse(status=204)


@api_key_required(READ)
def list_attachments(request: ApiRequest, volume_id: str) -> JsonResponse:
    volume = volumes.get_volume(request.project, volume_id)
    rows = volumes.live_attachments(volume)
    for row in rows:
        row.volume = volume
    return JsonResponse([volumes.attachment_to_dict(row) for row in rows], safe=False)


_base = "volumes/<str:volume_id>/"
urlpatterns = [
    path("volumes", methods(GET=list_volumes, POST=create_volume), name="v1-volumes"),
    path("volumes/by-name/<str:name>", methods(GET=get_volume_by_name), name="v1-volume-by-name"),
    path(
        "volumes/<str:volume_id>", methods(GET=get_volume, DELETE=delete_volume), name="v1-volume"
    ),
    path(
        "volumes/<str:volume_id>/attachments",
        methods(GET=list_attachments),
        name="v1-volume-attachments",
    ),
    *volume_file_urlpatterns(_base),
    *upload_urlpatterns(VOLUME, "volumes/<str:owner_id>/"),
]


# --- a sandbox's attachments (SDK runtime routes) ---------------------------------------


@api_key_required(READ)
def sandbox_attachments(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    """GET: the sandbox's mounts (what its metadata.volume_attachments also says)."""
    sandbox = get_sandbox(request.project, sandbox_id)
    rows = sandbox.volume_attachments.select_related("volume")
    return JsonResponse([volumes.attachment_to_dict(row) for row in rows], safe=False)


@api_key_required(READ)
def sandbox_attachment(request: ApiRequest, sandbox_id: str, attachment_id: str) -> JsonResponse:
    """GET .../volumes/{attachment}/health: the attachment as it stands."""
    sandbox = get_sandbox(request.project, sandbox_id)
    row = (
        sandbox.volume_attachments.select_related("volume").filter(public_id=attachment_id).first()
    )
    if row is None:
        raise ApiError("not_found", f"Volume attachment {attachment_id} not found")
    return JsonResponse(volumes.attachment_to_dict(row))


@api_key_required(WRITE)
def attach_later(request: ApiRequest, sandbox_id: str, attachment_id: str = "") -> JsonResponse:
    get_sandbox(request.project, sandbox_id)
    raise ApiError(
        "not_implemented",
        "Volumes are mounted when a sandbox is created (--volume); attaching, detaching or "
        "remounting a running sandbox's volumes is not supported by this server",
    )


_sb = "sandboxes/<str:sandbox_id>/volumes"
urlpatterns += [
    path(_sb, methods(GET=sandbox_attachments, POST=attach_later), name="v1-sandbox-volumes"),
    path(_sb + "/<str:attachment_id>", methods(DELETE=attach_later), name="v1-sandbox-volume"),
    path(
        _sb + "/<str:attachment_id>/health",
        methods(GET=sandbox_attachment),
        name="v1-sandbox-volume-health",
    ),
    path(
        _sb + "/<str:attachment_id>/remount",
        methods(POST=attach_later),
        name="v1-sandbox-volume-remount",
    ),
]
