"""Resumable upload sessions of a sandbox (/v1/sandboxes/{id}/uploads, docs/api.md §2.6) and
of a volume (/v1/volumes/{id}/uploads, section 5): one set of views per owner kind.

Create and complete honour Idempotency-Key (create replays the session made with
the same key; complete on a completed session answers the same result). Parts are
checked against `x-nullspace-part-sha256` and staged on disk by console.sandboxes.uploads.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.urls import URLPattern, path

from console.actor import Actor
from console.api.auth import RAW_BODY, READ, WRITE, ApiRequest, api_key_required, methods
from console.api.errors import ApiError
from console.models import UploadSession
from console.sandboxes import uploads
from console.sandboxes.api.files import file_errors, raw_body
from console.sandboxes.api.owners import SANDBOX, OwnerKind


def upload_urlpatterns(kind: OwnerKind, base: str) -> list[URLPattern]:
    """The upload-session routes of one owner kind under `base` + "uploads"."""

    def session_of(request: ApiRequest, owner_id: str, upload_id: str) -> UploadSession:
        owner = kind.lookup(request, owner_id)
        session = (
            UploadSession.objects.filter(**{kind.kind: owner.row}, public_id=upload_id)
            .select_related("sandbox", "volume")
            .first()
        )
        if session is None:
            raise ApiError("upload_not_found", f"Upload session {upload_id} not found")
        return session

    @api_key_required(WRITE)
    def create_upload(request: ApiRequest, owner_id: str) -> JsonResponse:
        owner = kind.lookup(request, owner_id)
        key = (request.headers.get("Idempotency-Key") or "").strip()[:200]
        with file_errors():
            session = uploads.create_session(
                owner.row,
                request.json,
                actor=Actor.of(request),
                idempotency_key=key,
            )
        return JsonResponse({"session": uploads.to_dict(session)}, status=201)

    @api_key_required(READ)
    def get_upload(request: ApiRequest, owner_id: str, upload_id: str) -> JsonResponse:
        return JsonResponse(uploads.to_dict(session_of(request, owner_id, upload_id)))

    @api_key_required(WRITE)
    def abort_upload(request: ApiRequest, owner_id: str, upload_id: str) -> HttpResponse:
        session = session_of(request, owner_id, upload_id)
        if session.status == "completed":
            raise ApiError(
                "upload_conflict", "This upload is already completed; there is nothing to abort"
            )
        uploads.abort(session)
        return HttpResponse(status=204)

    @raw_body
    @api_key_required(WRITE, body=RAW_BODY)
    def put_part(
        request: ApiRequest, owner_id: str, upload_id: str, part_number: int
    ) -> JsonResponse:
        session = session_of(request, owner_id, upload_id)
        with file_errors(upload_id):
            uploads.put_part(
                session, part_number, request, request.headers.get("x-nullspace-part-sha256")
            )
        return JsonResponse(uploads.to_dict(session))

    @api_key_required(WRITE)
    def complete_upload(request: ApiRequest, owner_id: str, upload_id: str) -> JsonResponse:
        session = session_of(request, owner_id, upload_id)
        checksum = request.json.get("whole_checksum_sha256")
        with file_errors(upload_id):
            session = uploads.complete(session, checksum)
        return JsonResponse(uploads.complete_dict(session))

    name = f"v1-{kind.kind}-upload"
    prefix = base + "uploads"
    return [
        path(prefix, methods(POST=create_upload), name=f"{name}s"),
        path(
            prefix + "/<str:upload_id>",
            methods(GET=get_upload, DELETE=abort_upload),
            name=name,
        ),
        path(
            prefix + "/<str:upload_id>/parts/<int:part_number>",
            methods(PUT=put_part),
            name=f"{name}-part",
        ),
        path(
            prefix + "/<str:upload_id>/complete",
            methods(POST=complete_upload),
            name=f"{name}-complete",
        ),
    ]


urlpatterns = upload_urlpatterns(SANDBOX, "sandboxes/<str:owner_id>/")
