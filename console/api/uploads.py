"""/v1/sandboxes/{id}/uploads: resumable upload sessions (api-contract 2.6).

Create and complete honour Idempotency-Key (create replays the session made with
the same key; complete on a completed session answers the same result). Parts are
checked against `x-nullspace-part-sha256` and staged on disk by console.uploads.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from console import uploads
from console.api.auth import RAW_BODY, READ, WRITE, api_key_required, methods
from console.api.errors import ApiError
from console.api.files import file_errors, raw_body, sandbox_for
from console.models import UploadSession


def _session(request: HttpRequest, sandbox_id: str, upload_id: str) -> UploadSession:
    sandbox = sandbox_for(request, sandbox_id)
    session = (
        UploadSession.objects.filter(sandbox=sandbox, public_id=upload_id)
        .select_related("sandbox")
        .first()
    )
    if session is None:
        raise ApiError("upload_not_found", f"Upload session {upload_id} not found")
    return session


@api_key_required(WRITE)
def create_upload(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    key = (request.headers.get("Idempotency-Key") or "").strip()[:200]
    with file_errors():
        session = uploads.create_session(
            sandbox,
            request.json,  # type: ignore[attr-defined]
            api_key=request.api_key,  # type: ignore[attr-defined]
            idempotency_key=key,
        )
    return JsonResponse({"session": uploads.to_dict(session)}, status=201)


@api_key_required(READ)
def get_upload(request: HttpRequest, sandbox_id: str, upload_id: str) -> JsonResponse:
    return JsonResponse(uploads.to_dict(_session(request, sandbox_id, upload_id)))


@api_key_required(WRITE)
def abort_upload(request: HttpRequest, sandbox_id: str, upload_id: str) -> HttpResponse:
    session = _session(request, sandbox_id, upload_id)
    if session.status == "completed":
        raise ApiError(
            "upload_conflict", "This upload is already completed; there is nothing to abort"
        )
    uploads.abort(session)
    return HttpResponse(status=204)


@raw_body
@api_key_required(WRITE, body=RAW_BODY)
def put_part(
    request: HttpRequest, sandbox_id: str, upload_id: str, part_number: int
) -> JsonResponse:
    session = _session(request, sandbox_id, upload_id)
    with file_errors(upload_id):
        uploads.put_part(
            session, part_number, request, request.headers.get("x-nullspace-part-sha256")
        )
    return JsonResponse(uploads.to_dict(session))


@api_key_required(WRITE)
def complete_upload(request: HttpRequest, sandbox_id: str, upload_id: str) -> JsonResponse:
    session = _session(request, sandbox_id, upload_id)
    with file_errors(upload_id):
        session = uploads.complete(session, request.json.get("whole_checksum_sha256"))  # type: ignore[attr-defined]
    return JsonResponse(uploads.complete_dict(session))


_base = "sandboxes/<str:sandbox_id>/uploads"
urlpatterns = [
    path(_base, methods(POST=create_upload), name="v1-sandbox-uploads"),
    path(
        _base + "/<str:upload_id>",
        methods(GET=get_upload, DELETE=abort_upload),
        name="v1-sandbox-upload",
    ),
    path(
        _base + "/<str:upload_id>/parts/<int:part_number>",
        methods(PUT=put_part),
        name="v1-sandbox-upload-part",
    ),
    path(
        _base + "/<str:upload_id>/complete",
        methods(POST=complete_upload),
        name="v1-sandbox-upload-complete",
    ),
]
