"""/v1/sandboxes/{id}/files... and /file: the sandbox files API (docs/api.md §2.6), minus upload sessions.

Shapes are the contract's STRICT ones (FileInfo, SearchMatch, UploadUrl). Raw-byte
routes stream: request bodies are read in chunks into a temporary file beside the
target, never through `request.body`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.http import FileResponse, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt

from console.api.auth import (
    MULTIPART_BODY,
    RAW_BODY,
    READ,
    SIGNED_URL,
    WRITE,
    ApiRequest,
    api_key_required,
    methods,
)
from console.api.errors import UPLOAD_STATUS_BY_REASON, ApiError, error_response
from console.errors import DomainError
from console.models import Sandbox, SandboxStatus
from console.runtime.base import FileStore, RuntimeError_
from console.sandboxes import files as sandbox_files
from console.sandboxes.service import get_sandbox
from console.sandboxes.upload_extract import UploadFailure
from console.tokens import read_url_payload, sign_url_payload
from console.volumes.files import VolumeFileStore

SIGNED_URL_TTL_SECONDS = 15 * 60
DOWNLOAD_PURPOSE = "sandbox-file-download"
UPLOAD_PURPOSE = "sandbox-file-upload"


def sandbox_for(request: ApiRequest, sandbox_id: str) -> Sandbox:
    """The request's project's sandbox; another project's or a destroyed one is a 404."""
    sandbox = get_sandbox(request.project, sandbox_id)
    # Files of a paused sandbox stay readable and writable (they are on disk).
    if sandbox.status == SandboxStatus.DESTROYED:
        raise ApiError("sandbox_not_found", f"Sandbox {sandbox_id} was destroyed")
    return sandbox


def upload_error(failure: UploadFailure, upload_id: str | None = None) -> ApiError:
    detail = {
        "reason": failure.reason,
        "message": failure.message,
        "retryable": failure.retryable,
        "upload_id": upload_id,
        "path": failure.path,
        "part_number": failure.part_number,
        "details": failure.details,
    }
    return ApiError(
        "file_upload_error",
        failure.message,
        status=UPLOAD_STATUS_BY_REASON.get(failure.reason, 400),
        retryable=failure.retryable,
        error_detail={k: v for k, v in detail.items() if v is not None},
    )


@contextmanager
def file_errors(upload_id: str | None = None) -> Iterator[None]:
    """Turn runtime, upload and OS errors into the contract's envelope (no host paths leak)."""
    try:
        yield
    except UploadFailure as failure:
        raise upload_error(failure, upload_id) from None
    except RuntimeError_ as exc:
        raise ApiError(exc.code, str(exc)) from None
    except (RequestDataTooBig, TooManyFilesSent, TooManyFieldsSent) as exc:
        raise ApiError("invalid_request", f"Request too large: {exc}") from None
    except FileNotFoundError:
        raise ApiError("file_not_found", "No such file or directory") from None
    except NotADirectoryError:
        raise ApiError(
            "invalid_request", "A parent of that path is a file, not a directory"
        ) from None
    except OSError as exc:
        raise ApiError("invalid_request", f"File operation failed: {exc.strerror or exc}") from None


def raw_body(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Byte uploads often come with no Content-Type (httpx streams a generator); mark them
    octet-stream so the API decorator never buffers or parses the body as JSON."""

    @functools.wraps(view)
    def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        request.content_type = "application/octet-stream"
        return view(request, *args, **kwargs)

    return wrapper


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


def _body_path(request: ApiRequest, field: str = "path") -> Any:
    return request.json.get(field)


def _user(request: ApiRequest) -> str | None:
    """The `user` of a JSON body or of the query string (null: the sandbox's default)."""
    raw = request.GET.get("user")
    if raw is None and request.content_type == "application/json":
        raw = getattr(request, "json", {}).get("user")
    try:
        return sandbox_files.user_of(raw)
    except RuntimeError_ as exc:
        raise ApiError(exc.code, str(exc)) from None


# --- JSON routes ---------------------------------------------------------------------


@api_key_required(READ)
def read_file(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    encoding = request.json.get("encoding") or "utf8"
    with file_errors():
        if encoding in ("utf8", "utf-8"):
            content = sandbox_files.read_text(
                sandbox.runtime_id, _body_path(request), _user(request)
            )
            size = len(content.encode())
        elif encoding == "base64":
            data = sandbox_files.read_bytes(sandbox.runtime_id, _body_path(request), _user(request))
            content, size = base64.b64encode(data).decode("ascii"), len(data)
        else:
            raise ApiError("invalid_request", "`encoding` must be utf8 or base64")
    return JsonResponse(
        {"content": content, "encoding": "base64" if encoding == "base64" else "utf8", "size": size}
    )


@api_key_required(WRITE)
def write_file(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    body = request.json
    content, encoding = body.get("content"), body.get("encoding") or "utf8"
    if not isinstance(content, str):
        raise ApiError("invalid_request", "`content` must be a string")
    if encoding in ("utf8", "utf-8"):
        data = content.encode("utf-8")
    elif encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError("invalid_request", "`content` is not valid base64") from None
    else:
        raise ApiError("invalid_request", "`encoding` must be utf8 or base64")
    with file_errors():
        return JsonResponse(
            sandbox_files.write_chunks(
                sandbox.runtime_id, body.get("path"), [data], user=_user(request)
            )
        )


@api_key_required(WRITE, body=MULTIPART_BODY)
def batch_write(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        manifest_part = request.FILES.get("manifest")
        raw = manifest_part.read() if manifest_part else request.POST.get("manifest", "")
    try:
        entries = json.loads(raw or "null")["files"]
    except (ValueError, TypeError, KeyError):
        entries = None
    # A plain check, not `assert`: python -O would strip an assert and let bad manifests in.
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ApiError(
            "invalid_request", "multipart part `manifest` must be JSON {files: [{path, field}]}"
        )
    try:
        manifest_user = sandbox_files.user_of(json.loads(raw or "{}").get("user"))
    except (RuntimeError_, ValueError, AttributeError):
        raise ApiError("invalid_request", "manifest `user` must be a user name") from None
    results = []
    for entry in entries:
        target, upload = entry.get("path"), request.FILES.get(str(entry.get("field")))
        try:
            if upload is None:
                raise ApiError("invalid_request", f"no multipart part named {entry.get('field')!r}")
            with file_errors():
                written = sandbox_files.write_chunks(
                    sandbox.runtime_id, target, upload.chunks(), user=manifest_user
                )
                results.append({"status": "success", "path": target, "info": written})
        except DomainError as error:
            results.append({"status": "error", "path": str(target), "error": error.message})
    return JsonResponse({"results": results})


@api_key_required(READ)
def list_files(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    depth_text = request.GET.get("depth") or "1"
    if not depth_text.isdigit():
        raise ApiError("invalid_request", "`depth` must be a non-negative integer")
    with file_errors():
        entries = sandbox_files.listing(
            sandbox.runtime_id,
            request.GET.get("path") or "/workspace",
            depth=max(1, int(depth_text)),
            user=_user(request),
        )
    return JsonResponse(entries, safe=False)


@api_key_required(READ)
def file_info(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        return JsonResponse(
            sandbox_files.info(sandbox.runtime_id, _body_path(request), _user(request))
        )


@api_key_required(READ)
def file_exists(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        return JsonResponse(
            {
                "exists": sandbox_files.exists(
                    sandbox.runtime_id, _body_path(request), _user(request)
                )
            }
        )


@api_key_required(WRITE)
def make_dir(request: ApiRequest, sandbox_id: str) -> HttpResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        sandbox_files.mkdir(sandbox.runtime_id, _body_path(request), _user(request))
    return _no_content()


@api_key_required(WRITE)
def remove_file(request: ApiRequest, sandbox_id: str) -> HttpResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        sandbox_files.remove(sandbox.runtime_id, _body_path(request), _user(request))
    return _no_content()


@api_key_required(WRITE)
def rename_file(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        return JsonResponse(
            sandbox_files.rename(
                sandbox.runtime_id,
                _body_path(request, "old_path"),
                _body_path(request, "new_path"),
                _user(request),
            )
        )


@api_key_required(WRITE)
def set_permissions(request: ApiRequest, sandbox_id: str) -> HttpResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        sandbox_files.chmod(
            sandbox.runtime_id,
            _body_path(request),
            _body_path(request, "permissions"),
            _user(request),
        )
    return _no_content()


def _search(request: ApiRequest, sandbox_id: str, finder: Callable[..., list]) -> JsonResponse:
    """{path, pattern} in, a JSON list out: `files/find` (content) and `files/search` (names)."""
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        found = finder(
            sandbox.runtime_id,
            _body_path(request),
            _body_path(request, "pattern"),
            _user(request),
        )
    return JsonResponse(found, safe=False)


@api_key_required(READ)
def find_in_files(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    return _search(request, sandbox_id, sandbox_files.find_content)


@api_key_required(READ)
def search_names(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    return _search(request, sandbox_id, sandbox_files.find_names)


@api_key_required(WRITE)
def replace_in_files(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    body = request.json
    with file_errors():
        return JsonResponse(
            sandbox_files.replace(
                sandbox.runtime_id,
                body.get("files"),
                body.get("pattern"),
                body.get("replacement"),
                _user(request),
            )
        )


# --- Raw bytes -------------------------------------------------------------------------


def file_response(
    owner: str | FileStore, target: Any, as_tar: bool, user: str | None = None
) -> FileResponse:
    """A file's bytes, or a directory as an uncompressed tar, of a sandbox (its runtime id)
    or of a volume (its file store)."""
    spath = sandbox_files.locate(owner, target, user)
    if sandbox_files.is_dir(owner, spath):
        if not as_tar:
            raise ApiError(
                "invalid_request",
                f"{target} is a directory; ask for archive_format=tar to download it as a tar",
            )
        return _streamed(
            sandbox_files.tar_directory(owner, spath),
            as_attachment=True,
            filename=f"{posixpath.basename(spath) or 'root'}.tar",
            content_type="application/x-tar",
        )
    handle = sandbox_files.open_file(owner, spath)
    return _streamed(handle, as_attachment=False, content_type="application/octet-stream")


def _streamed(handle: Any, **kwargs: Any) -> FileResponse:
    # 1 MiB blocks: Django's 4 KiB default made a 200 MiB download 51,200 ASGI messages.
    response = FileResponse(handle, **kwargs)
    response.block_size = sandbox_files.COPY_CHUNK
    return response


def receive_file(
    request: ApiRequest, owner: str | FileStore, target: Any, user: str | None = None
) -> None:
    """Stream a request body into `target`, refusing early a declared length that cannot fit."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > settings.MAX_FILE_BYTES:
        raise ApiError(
            "file_too_large",
            f"{declared} bytes is over the {settings.MAX_FILE_BYTES}-byte file limit",
        )
    if declared.isdigit() and isinstance(owner, VolumeFileStore):
        owner.check_room(int(declared), "the volume")
    sandbox_files.write_chunks(owner, target, sandbox_files.iter_stream(request), user=user)


def _file_response(
    sandbox: Sandbox, target: Any, as_tar: bool, user: str | None = None
) -> FileResponse:
    return file_response(sandbox.runtime_id, target, as_tar, user)


def _receive_file(
    request: ApiRequest, sandbox: Sandbox, target: Any, user: str | None = None
) -> None:
    receive_file(request, sandbox.runtime_id, target, user)


@api_key_required(READ)
def download_file(request: ApiRequest, sandbox_id: str) -> FileResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        return _file_response(sandbox, request.GET.get("path"), as_tar=False, user=_user(request))


@raw_body
@api_key_required(WRITE, body=RAW_BODY)
def upload_file(request: ApiRequest, sandbox_id: str) -> HttpResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        _receive_file(request, sandbox, request.GET.get("path"), _user(request))
    return _no_content()


# --- Self-authenticating signed URLs ------------------------------------------------------


def _signed_url(
    request: ApiRequest, sandbox: Sandbox, route: str, payload: dict, purpose: str
) -> tuple[str, str]:
    """The self-authenticating URL and the token it carries."""
    token = sign_url_payload(
        {"sb": sandbox.public_id, "prj": sandbox.project_id, **payload}, purpose
    )
    base = request.build_absolute_uri(reverse(route, args=[sandbox.public_id]))
    return f"{base}?{urlencode({'token': token})}", token


@api_key_required(READ)
def download_url(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    archive = request.json.get("archive_format")
    if archive not in (None, "tar"):
        raise ApiError("invalid_request", "`archive_format` must be tar or null")
    with file_errors():
        target = sandbox_files.locate(sandbox.runtime_id, _body_path(request), _user(request))
        if not sandbox_files.exists(sandbox.runtime_id, target):
            raise ApiError("file_not_found", f"{target} does not exist")
        if sandbox_files.is_dir(sandbox.runtime_id, target) and archive != "tar":
            raise ApiError("invalid_request", "That path is a directory; pass archive_format=tar")
    url, _token = _signed_url(
        request,
        sandbox,
        "v1-sandbox-file-signed-download",
        {"path": target, "tar": bool(archive)},
        DOWNLOAD_PURPOSE,
    )
    return JsonResponse({"url": url})


@api_key_required(WRITE)
def upload_url(request: ApiRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandbox_for(request, sandbox_id)
    with file_errors():
        target = sandbox_files.locate(sandbox.runtime_id, _body_path(request), _user(request))
    url, token = _signed_url(
        request, sandbox, "v1-sandbox-file-signed-upload", {"path": target}, UPLOAD_PURPOSE
    )
    # The client reads UploadUrl(url, token); the token is the one the URL carries.
    return JsonResponse({"url": url, "token": token})


def signed_url_view(
    purpose: str, claim: str, load: Callable[[str, int], Any]
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """No API key: the `token` query parameter names the resource (its id under `claim`),
    its project and the path, and expires. `load(id, project_id)` finds what the view
    gets, or raises a DomainError. Sandbox and volume files share it."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: ApiRequest, **route: str) -> HttpResponseBase:
            (resource_id,) = route.values()  # the URL's one id, whatever its name
            try:
                payload = read_url_payload(
                    request.GET.get("token", ""), purpose, SIGNED_URL_TTL_SECONDS
                )
                if not payload or payload.get(claim) != resource_id:
                    raise ApiError(
                        "unauthorized",
                        "This signed URL is invalid or has expired; ask for a new one",
                    )
                target = load(resource_id, payload.get("prj") or 0)
                with file_errors():
                    return view(request, target, payload)
            except DomainError as error:
                return error_response(request, error)

        wrapper.api_scope = SIGNED_URL  # type: ignore[attr-defined]  # the guard test's marker
        return wrapper

    return decorate


def _signed_sandbox(sandbox_id: str, project_id: int) -> Sandbox:
    sandbox = (
        Sandbox.objects.filter(public_id=sandbox_id, project_id=project_id)
        .exclude(status=SandboxStatus.DESTROYED)
        .first()
    )
    if sandbox is None:
        raise ApiError("sandbox_not_found", f"Sandbox {sandbox_id} not found")
    return sandbox


def signed_view(
    purpose: str,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    return signed_url_view(purpose, "sb", _signed_sandbox)


@signed_view(DOWNLOAD_PURPOSE)
def signed_download(request: ApiRequest, sandbox: Sandbox, payload: dict) -> HttpResponseBase:
    return _file_response(sandbox, payload["path"], as_tar=bool(payload.get("tar")))


@raw_body
@signed_view(UPLOAD_PURPOSE)
def signed_upload(request: ApiRequest, sandbox: Sandbox, payload: dict) -> HttpResponse:
    _receive_file(request, sandbox, payload["path"])
    return _no_content()


# Room for a multipart body's boundaries and part headers around the one file.
FORM_OVERHEAD_BYTES = 64 * 1024


@signed_view(UPLOAD_PURPOSE)
def signed_form_upload(request: ApiRequest, sandbox: Sandbox, payload: dict) -> HttpResponse:
    """The same signed URL posted as a form (multipart, one file part), as the client's
    direct upload and a browser send it."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > settings.MAX_FILE_BYTES + FORM_OVERHEAD_BYTES:
        raise ApiError(
            "file_too_large",
            f"{declared} bytes is over the {settings.MAX_FILE_BYTES}-byte file limit",
        )
    if request.content_type != "multipart/form-data":
        raise ApiError(
            "invalid_request",
            "POST a multipart/form-data body with one file part, or PUT the raw bytes",
        )
    try:
        parts = list(request.FILES.values())
    except MultiPartParserError as exc:
        raise ApiError("invalid_request", f"Malformed multipart body: {exc}") from None
    if len(parts) != 1:
        raise ApiError("invalid_request", f"Send exactly one file part (got {len(parts)})")
    upload = parts[0]
    assert isinstance(upload, UploadedFile)  # a multipart part with a filename
    sandbox_files.write_chunks(sandbox.runtime_id, payload["path"], upload.chunks())
    return _no_content()


_base = "sandboxes/<str:sandbox_id>/"
urlpatterns = [
    path(_base + "file", methods(GET=download_file, PUT=upload_file), name="v1-sandbox-file"),
    path(_base + "files", methods(GET=list_files), name="v1-sandbox-files"),
    path(_base + "files/read", methods(POST=read_file), name="v1-sandbox-file-read"),
    path(_base + "files/write", methods(POST=write_file), name="v1-sandbox-file-write"),
    path(
        _base + "files/batch-write", methods(POST=batch_write), name="v1-sandbox-file-batch-write"
    ),
    path(_base + "files/info", methods(POST=file_info), name="v1-sandbox-file-info"),
    path(_base + "files/exists", methods(POST=file_exists), name="v1-sandbox-file-exists"),
    path(_base + "files/mkdir", methods(POST=make_dir), name="v1-sandbox-file-mkdir"),
    path(_base + "files/remove", methods(POST=remove_file), name="v1-sandbox-file-remove"),
    path(_base + "files/rename", methods(POST=rename_file), name="v1-sandbox-file-rename"),
    path(
        _base + "files/permissions",
        methods(POST=set_permissions),
        name="v1-sandbox-file-permissions",
    ),
    path(_base + "files/find", methods(POST=find_in_files), name="v1-sandbox-file-find"),
    path(_base + "files/search", methods(POST=search_names), name="v1-sandbox-file-search"),
    path(_base + "files/replace", methods(POST=replace_in_files), name="v1-sandbox-file-replace"),
    path(
        _base + "files/download-url",
        methods(POST=download_url),
        name="v1-sandbox-file-download-url",
    ),
    path(_base + "files/upload-url", methods(POST=upload_url), name="v1-sandbox-file-upload-url"),
    path(
        _base + "files/signed-download",
        methods(GET=signed_download),
        name="v1-sandbox-file-signed-download",
    ),
    path(
        _base + "files/signed-upload",
        methods(PUT=signed_upload, POST=signed_form_upload),
        name="v1-sandbox-file-signed-upload",
    ),
]
