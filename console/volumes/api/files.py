"""/v1/volumes/{id}/files... and /file: a volume's files API (docs/api.md §5).

The work is console/sandboxes/files.py on the volume's file store (console/volumes/files.py)
and the byte routes of console/sandboxes/api/files.py; this module only finds the volume (another
project's is `not_found`) and signs URLs for volumes. Volume requests carry no `user`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse

from console.api.auth import (
    RAW_BODY,
    READ,
    WRITE,
    ApiRequest,
    api_key_required,
    methods,
)
from console.api.errors import ApiError
from console.models import Volume
from console.runtime.base import FileStore
from console.sandboxes import files as sandbox_files
from console.sandboxes.api import files as files_api
from console.sandboxes.api.files import file_errors, file_response, raw_body, receive_file
from console.sandboxes.api.owners import VOLUME, volume_owner
from console.tokens import sign_url_payload

DOWNLOAD_PURPOSE = "volume-file-download"
UPLOAD_PURPOSE = "volume-file-upload"


def _files(request: ApiRequest, volume_id: str) -> FileStore:
    files = VOLUME.lookup(request, volume_id).files
    assert isinstance(files, FileStore)
    return files


def _body(request: ApiRequest, field: str = "path") -> Any:
    return request.json.get(field)


def _decode(body: dict[str, Any]) -> bytes:
    content, encoding = body.get("content"), body.get("encoding") or "utf8"
    if not isinstance(content, str):
        raise ApiError("invalid_request", "`content` must be a string")
    if encoding in ("utf8", "utf-8"):
        return content.encode("utf-8")
    if encoding != "base64":
        raise ApiError("invalid_request", "`encoding` must be utf8 or base64")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("invalid_request", "`content` is not valid base64") from None


def _json_call(access: str, call: Callable[[FileStore, ApiRequest], Any]) -> Callable[..., Any]:
    """A POST or GET route: `call`'s answer as JSON, or 204 when it gives None."""

    @api_key_required(access)
    def view(request: ApiRequest, volume_id: str) -> HttpResponse:
        files = _files(request, volume_id)
        with file_errors():
            result = call(files, request)
        if result is None:
            return HttpResponse(status=204)
        return JsonResponse(result, safe=False)

    return view


def _read(files: FileStore, request: ApiRequest) -> dict[str, Any]:
    encoding = _body(request, "encoding") or "utf8"
    if encoding in ("utf8", "utf-8"):
        content = sandbox_files.read_text(files, _body(request))
        return {"content": content, "encoding": "utf8", "size": len(content.encode())}
    if encoding != "base64":
        raise ApiError("invalid_request", "`encoding` must be utf8 or base64")
    data = sandbox_files.read_bytes(files, _body(request))
    return {
        "content": base64.b64encode(data).decode("ascii"),
        "encoding": "base64",
        "size": len(data),
    }


def _write(files: FileStore, request: ApiRequest) -> dict[str, Any]:
    data = _decode(request.json)
    return sandbox_files.write_chunks(files, _body(request), [data])


def _list(files: FileStore, request: ApiRequest) -> list[dict[str, Any]]:
    depth = request.GET.get("depth") or "1"
    if not depth.isdigit():
        raise ApiError("invalid_request", "`depth` must be a non-negative integer")
    return sandbox_files.listing(files, request.GET.get("path") or "/", max(1, int(depth)))


def _replace(files: FileStore, request: ApiRequest) -> dict[str, Any]:
    dry_run = _body(request, "dry_run")
    if dry_run not in (None, True, False):
        raise ApiError("invalid_request", "`dry_run` must be true or false")
    return sandbox_files.replace(
        files,
        _body(request, "files"),
        _body(request, "pattern"),
        _body(request, "replacement"),
        dry_run=bool(dry_run),
    )


def _signed(
    request: ApiRequest, volume: Volume, route: str, payload: dict[str, Any], purpose: str
) -> tuple[str, str]:
    token = sign_url_payload(
        {"vol": volume.public_id, "prj": volume.project_id, **payload}, purpose
    )
    base = request.build_absolute_uri(reverse(route, args=[volume.public_id]))
    return f"{base}?{urlencode({'token': token})}", token


@api_key_required(READ)
def download_url(request: ApiRequest, volume_id: str) -> JsonResponse:
    owner = VOLUME.lookup(request, volume_id)
    archive = _body(request, "archive_format")
    if archive not in (None, "tar"):
        raise ApiError("invalid_request", "`archive_format` must be tar or null")
    with file_errors():
        target = sandbox_files.locate(owner.files, _body(request))
        if not sandbox_files.exists(owner.files, target):
            raise ApiError("file_not_found", f"{target} does not exist")
        if sandbox_files.is_dir(owner.files, target) and archive != "tar":
            raise ApiError("invalid_request", "That path is a directory; pass archive_format=tar")
    assert isinstance(owner.row, Volume)
    url, _token = _signed(
        request,
        owner.row,
        "v1-volume-file-signed-download",
        {"path": target, "tar": bool(archive)},
        DOWNLOAD_PURPOSE,
    )
    return JsonResponse({"url": url})


@api_key_required(WRITE)
def upload_url(request: ApiRequest, volume_id: str) -> JsonResponse:
    owner = VOLUME.lookup(request, volume_id)
    with file_errors():
        target = sandbox_files.locate(owner.files, _body(request))
    assert isinstance(owner.row, Volume)
    url, token = _signed(
        request, owner.row, "v1-volume-file-signed-upload", {"path": target}, UPLOAD_PURPOSE
    )
    return JsonResponse({"url": url, "token": token})


def _signed_volume_files(volume_id: str, project_id: int) -> Any:
    volume = Volume.objects.filter(public_id=volume_id, project_id=project_id).first()
    if volume is None:
        raise ApiError("not_found", f"Volume {volume_id} not found")
    return volume_owner(volume).files


def _signed_view(
    purpose: str,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """No API key: the `token` query parameter names the volume, its project and the path."""
    return files_api.signed_url_view(purpose, "vol", _signed_volume_files)


@_signed_view(DOWNLOAD_PURPOSE)
def signed_download(
    request: ApiRequest, files: FileStore, payload: dict[str, Any]
) -> HttpResponseBase:
    return file_response(files, payload["path"], as_tar=bool(payload.get("tar")))


@raw_body
@_signed_view(UPLOAD_PURPOSE)
def signed_upload(
    request: ApiRequest, files: FileStore, payload: dict[str, Any]
) -> HttpResponseBase:
    receive_file(request, files, payload["path"])
    return HttpResponse(status=204)


@api_key_required(READ)
def download_file(request: ApiRequest, volume_id: str) -> HttpResponseBase:
    files = _files(request, volume_id)
    with file_errors():
        return file_response(files, request.GET.get("path"), as_tar=False)


@raw_body
@api_key_required(WRITE, body=RAW_BODY)
def upload_file(request: ApiRequest, volume_id: str) -> HttpResponse:
    files = _files(request, volume_id)
    with file_errors():
        receive_file(request, files, request.GET.get("path"))
    return HttpResponse(status=204)


def _post(base: str, route: str, view: Callable[..., Any]) -> URLPattern:
    return path(base + "files/" + route, methods(POST=view), name=f"v1-volume-file-{route}")


def volume_file_urlpatterns(base: str) -> list[URLPattern]:
    """Every files route of a volume under `base` ("volumes/<str:volume_id>/")."""
    S = sandbox_files
    return [
        path(base + "file", methods(GET=download_file, PUT=upload_file), name="v1-volume-file"),
        path(base + "files", methods(GET=_json_call(READ, _list)), name="v1-volume-files"),
        _post(base, "read", _json_call(READ, _read)),
        _post(base, "write", _json_call(WRITE, _write)),
        _post(base, "info", _json_call(READ, lambda f, r: S.info(f, _body(r)))),
        _post(base, "exists", _json_call(READ, lambda f, r: {"exists": S.exists(f, _body(r))})),
        _post(base, "mkdir", _json_call(WRITE, lambda f, r: S.mkdir(f, _body(r)))),
        _post(base, "remove", _json_call(WRITE, lambda f, r: S.remove(f, _body(r)))),
        _post(
            base,
            "rename",
            _json_call(WRITE, lambda f, r: S.rename(f, _body(r, "old_path"), _body(r, "new_path"))),
        ),
        _post(
            base,
            "permissions",
            _json_call(WRITE, lambda f, r: S.chmod(f, _body(r), _body(r, "permissions"))),
        ),
        _post(
            base,
            "find",
            _json_call(READ, lambda f, r: S.find_content(f, _body(r), _body(r, "pattern"))),
        ),
        _post(
            base,
            "search",
            _json_call(READ, lambda f, r: S.find_names(f, _body(r), _body(r, "pattern"))),
        ),
        _post(base, "replace", _json_call(WRITE, _replace)),
        _post(base, "download-url", download_url),
        _post(base, "upload-url", upload_url),
        path(
            base + "files/signed-download",
            methods(GET=signed_download),
            name="v1-volume-file-signed-download",
        ),
        path(
            base + "files/signed-upload",
            methods(PUT=signed_upload),
            name="v1-volume-file-signed-upload",
        ),
    ]
