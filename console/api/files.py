"""The files API of a sandbox (/v1/sandboxes/{id}/files..., api-contract 2.6) and of a
volume (/v1/volumes/{id}/files..., section 5), minus upload sessions.

Both are one set of views over a console.file_tree.FileTree, built per owner kind
by `file_urlpatterns`. Shapes are the contract's STRICT ones (FileInfo,
SearchMatch, UploadUrl, VolumeReplaceResult). Raw-byte routes stream: request
bodies are read in chunks into a temporary file beside the target, never through
`request.body`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt

from console import sandbox_files
from console.api.auth import READ, WRITE, api_key_required, methods
from console.api.errors import ApiError, error_response
from console.file_tree import FileTree, QuotaExceeded, byte_response, iter_stream
from console.models import Sandbox, SandboxStatus
from console.runtime.base import RuntimeError_
from console.sandboxes import get_sandbox
from console.tokens import read_url_payload, sign_url_payload
from console.upload_extract import UploadFailure

SIGNED_URL_TTL_SECONDS = 15 * 60


@dataclass(frozen=True)
class Owner:
    """Whose files a request is about: a sandbox or a volume, with its file tree."""

    kind: str  # sandbox | volume
    public_id: str
    project_id: int
    tree: FileTree
    row: Any  # the Sandbox or Volume


@dataclass(frozen=True)
class OwnerKind:
    """How one kind of owner is found: from an API request (another project's is a 404)
    and from a signed URL's payload (its public id and project)."""

    kind: str
    lookup: Callable[[HttpRequest, str], Owner]
    signed_lookup: Callable[[str, int], Owner]
    batch_write: bool


def sandbox_for(request: HttpRequest, sandbox_id: str) -> Sandbox:
    """The request's project's sandbox; another project's or a destroyed one is a 404."""
    sandbox = get_sandbox(request.project, sandbox_id)  # type: ignore[attr-defined]
    # Files of a paused sandbox stay readable and writable (they are on disk).
    if sandbox.status == SandboxStatus.DESTROYED:
        raise ApiError("sandbox_not_found", f"Sandbox {sandbox_id} was destroyed")
    return sandbox


def _sandbox_owner(sandbox: Sandbox) -> Owner:
    with file_errors():
        tree = sandbox_files.tree(sandbox.public_id)
    return Owner("sandbox", sandbox.public_id, sandbox.project_id, tree, sandbox)


def _signed_sandbox(public_id: str, project_id: int) -> Owner:
    sandbox = (
        Sandbox.objects.filter(public_id=public_id, project_id=project_id)
        .exclude(status=SandboxStatus.DESTROYED)
        .first()
    )
    if sandbox is None:
        raise ApiError("sandbox_not_found", f"Sandbox {public_id} not found")
    return _sandbox_owner(sandbox)


SANDBOX = OwnerKind(
    kind="sandbox",
    lookup=lambda request, sandbox_id: _sandbox_owner(sandbox_for(request, sandbox_id)),
    signed_lookup=_signed_sandbox,
    batch_write=True,
)


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
        status=failure.status,
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
    except QuotaExceeded as exc:
        raise ApiError(exc.code, str(exc), status=507) from None
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


def raw_body(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Byte uploads often come with no Content-Type (httpx streams a generator); mark them
    octet-stream so the API decorator never buffers or parses the body as JSON."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.content_type = "application/octet-stream"
        return view(request, *args, **kwargs)

    return wrapper


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


def _body(request: HttpRequest, field: str = "path") -> Any:
    return request.json.get(field)  # type: ignore[attr-defined]


def _decode_content(body: dict[str, Any]) -> bytes:
    content, encoding = body.get("content"), body.get("encoding") or "utf8"
    if not isinstance(content, str):
        raise ApiError("invalid_request", "`content` must be a string")
    if encoding in ("utf8", "utf-8"):
        return content.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError("invalid_request", "`content` is not valid base64") from None
    raise ApiError("invalid_request", "`encoding` must be utf8 or base64")


def file_response(tree: FileTree, target: Any, as_tar: bool) -> FileResponse:
    """The bytes of a file, or with as_tar a directory as an uncompressed tar."""
    host = tree.resolve(target, must_exist=True)
    if host.is_dir():
        if not as_tar:
            raise ApiError(
                "invalid_request",
                f"{target} is a directory; ask for archive_format=tar to download it as a tar",
            )
        return byte_response(
            tree.tar_directory(target),
            as_attachment=True,
            filename=f"{tree.base_name(host)}.tar",
            content_type="application/x-tar",
        )
    handle = tree.existing_file(target).open("rb")
    return byte_response(handle, as_attachment=False, content_type="application/octet-stream")


def receive_file(request: HttpRequest, tree: FileTree, target: Any) -> None:
    """Stream a request body into `target`, refusing a declared length that cannot fit."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > settings.MAX_FILE_BYTES:
        raise ApiError(
            "file_too_large",
            f"{declared} bytes is over the {settings.MAX_FILE_BYTES}-byte file limit",
        )
    if declared.isdigit() and tree.space_left is not None:
        room = tree.space_left()
        if int(declared) > room:
            raise QuotaExceeded(f"{declared} bytes do not fit: the volume has {room} bytes left")
    tree.write_chunks(target, iter_stream(request))


def file_urlpatterns(kind: OwnerKind, base: str) -> list[URLPattern]:
    """Every files route of one owner kind under `base` (e.g. "sandboxes/<str:owner_id>/")."""
    name = f"v1-{kind.kind}-file"
    download_purpose = f"{kind.kind}-file-download"
    upload_purpose = f"{kind.kind}-file-upload"

    @api_key_required(READ)
    def read_file(request: HttpRequest, owner_id: str) -> JsonResponse:
        tree = kind.lookup(request, owner_id).tree
        encoding = _body(request, "encoding") or "utf8"
        with file_errors():
            if encoding in ("utf8", "utf-8"):
                content = tree.read_text(_body(request))
                size = len(content.encode())
            elif encoding == "base64":
                data = tree.existing_file(_body(request)).read_bytes()
                content, size = base64.b64encode(data).decode("ascii"), len(data)
            else:
                raise ApiError("invalid_request", "`encoding` must be utf8 or base64")
        return JsonResponse(
            {
                "content": content,
                "encoding": "base64" if encoding == "base64" else "utf8",
                "size": size,
            }
        )

    @api_key_required(WRITE)
    def write_file(request: HttpRequest, owner_id: str) -> JsonResponse:
        tree = kind.lookup(request, owner_id).tree
        data = _decode_content(request.json)  # type: ignore[attr-defined]
        with file_errors():
            host = tree.write_chunks(_body(request), [data])
            return JsonResponse(tree.info(tree.display(host)))

    @api_key_required(WRITE)
    def batch_write(request: HttpRequest, owner_id: str) -> JsonResponse:
        tree = kind.lookup(request, owner_id).tree
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
        results = []
        for entry in entries:
            target, upload = entry.get("path"), request.FILES.get(str(entry.get("field")))
            try:
                if upload is None:
                    raise ApiError(
                        "invalid_request", f"no multipart part named {entry.get('field')!r}"
                    )
                with file_errors():
                    host = tree.write_chunks(target, upload.chunks())
                    results.append(
                        {"status": "success", "path": target, "info": tree.info(tree.display(host))}
                    )
            except ApiError as error:
                results.append({"status": "error", "path": str(target), "error": error.message})
        return JsonResponse({"results": results})

    @api_key_required(READ)
    def list_files(request: HttpRequest, owner_id: str) -> JsonResponse:
        tree = kind.lookup(request, owner_id).tree
        depth_text = request.GET.get("depth") or "1"
        if not depth_text.isdigit():
            raise ApiError("invalid_request", "`depth` must be a non-negative integer")
        with file_errors():
            entries = tree.listing(request.GET.get("path") or "/", depth=max(1, int(depth_text)))
        return JsonResponse(entries, safe=False)

    def path_call(
        access: str, call: Callable[[FileTree, HttpRequest], Any]
    ) -> Callable[..., HttpResponse]:
        """A POST route taking {path, ...}: its JSON answer, or 204 when `call` gives None."""

        @api_key_required(access)
        def view(request: HttpRequest, owner_id: str) -> HttpResponse:
            tree = kind.lookup(request, owner_id).tree
            with file_errors():
                result = call(tree, request)
            if result is None:
                return _no_content()
            return JsonResponse(result, safe=False)

        return view

    def download_url(request: HttpRequest, owner_id: str) -> JsonResponse:
        owner = kind.lookup(request, owner_id)
        archive = _body(request, "archive_format")
        if archive not in (None, "tar"):
            raise ApiError("invalid_request", "`archive_format` must be tar or null")
        with file_errors():
            host = owner.tree.resolve(_body(request), must_exist=True)
            if host.is_dir() and archive != "tar":
                raise ApiError(
                    "invalid_request", "That path is a directory; pass archive_format=tar"
                )
            target = owner.tree.display(host)
        payload = {"path": target, "tar": bool(archive)}
        url = _signed_url(request, owner, "signed-download", payload, download_purpose)
        return JsonResponse({"url": url})

    def upload_url(request: HttpRequest, owner_id: str) -> JsonResponse:
        owner = kind.lookup(request, owner_id)
        with file_errors():
            target = owner.tree.display(owner.tree.resolve(_body(request)))
        url = _signed_url(request, owner, "signed-upload", {"path": target}, upload_purpose)
        return JsonResponse({"url": url})

    def _signed_url(
        request: HttpRequest, owner: Owner, route: str, payload: dict[str, Any], purpose: str
    ) -> str:
        token = sign_url_payload(
            {"own": owner.public_id, "prj": owner.project_id, **payload}, purpose
        )
        base_url = request.build_absolute_uri(reverse(f"{name}-{route}", args=[owner.public_id]))
        return f"{base_url}?{urlencode({'token': token})}"

    def signed_view(
        purpose: str,
    ) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
        """No API key: the `token` query parameter names the owner and path, and expires."""

        def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            @csrf_exempt
            @functools.wraps(view)
            def wrapper(request: HttpRequest, owner_id: str) -> HttpResponse:
                try:
                    payload = read_url_payload(
                        request.GET.get("token", ""), purpose, SIGNED_URL_TTL_SECONDS
                    )
                    if not payload or payload.get("own") != owner_id:
                        raise ApiError(
                            "unauthorized",
                            "This signed URL is invalid or has expired; ask for a new one",
                        )
                    owner = kind.signed_lookup(owner_id, payload.get("prj"))
                    with file_errors():
                        return view(request, owner, payload)
                except ApiError as error:
                    return error_response(request, error)

            return wrapper

        return decorate

    @signed_view(download_purpose)
    def signed_download(
        request: HttpRequest, owner: Owner, payload: dict[str, Any]
    ) -> HttpResponseBase:
        return file_response(owner.tree, payload["path"], as_tar=bool(payload.get("tar")))

    @raw_body
    @signed_view(upload_purpose)
    def signed_upload(
        request: HttpRequest, owner: Owner, payload: dict[str, Any]
    ) -> HttpResponseBase:
        receive_file(request, owner.tree, payload["path"])
        return _no_content()

    @api_key_required(READ)
    def download_file(request: HttpRequest, owner_id: str) -> FileResponse:
        tree = kind.lookup(request, owner_id).tree
        with file_errors():
            return file_response(tree, request.GET.get("path"), as_tar=False)

    @raw_body
    @api_key_required(WRITE)
    def upload_file(request: HttpRequest, owner_id: str) -> HttpResponse:
        tree = kind.lookup(request, owner_id).tree
        with file_errors():
            receive_file(request, tree, request.GET.get("path"))
        return _no_content()

    def post(route: str, view: Callable) -> Any:
        return path(base + "files/" + route, methods(POST=view), name=f"{name}-{route}")

    routes = [
        path(base + "file", methods(GET=download_file, PUT=upload_file), name=name),
        path(base + "files", methods(GET=list_files), name=f"{name}s"),
        post("read", read_file),
        post("write", write_file),
        post("info", path_call(READ, lambda t, r: t.info(_body(r)))),
        post("exists", path_call(READ, lambda t, r: {"exists": t.exists(_body(r))})),
        post("mkdir", path_call(WRITE, lambda t, r: t.mkdir(_body(r)))),
        post("remove", path_call(WRITE, lambda t, r: t.remove(_body(r)))),
        post(
            "rename",
            path_call(WRITE, lambda t, r: t.rename(_body(r, "old_path"), _body(r, "new_path"))),
        ),
        post(
            "permissions", path_call(WRITE, lambda t, r: t.chmod(_body(r), _body(r, "permissions")))
        ),
        post("find", path_call(READ, lambda t, r: t.find_content(_body(r), _body(r, "pattern")))),
        post("search", path_call(READ, lambda t, r: t.find_names(_body(r), _body(r, "pattern")))),
        post(
            "replace",
            path_call(
                WRITE,
                lambda t, r: t.replace(
                    _body(r, "files"),
                    _body(r, "pattern"),
                    _body(r, "replacement"),
                    dry_run=bool(_body(r, "dry_run")),
                ),
            ),
        ),
        post("download-url", api_key_required(READ)(download_url)),
        post("upload-url", api_key_required(WRITE)(upload_url)),
        path(
            base + "files/signed-download",
            methods(GET=signed_download),
            name=f"{name}-signed-download",
        ),
        path(
            base + "files/signed-upload", methods(PUT=signed_upload), name=f"{name}-signed-upload"
        ),
    ]
    if kind.batch_write:
        routes.append(post("batch-write", batch_write))
    return routes


urlpatterns = file_urlpatterns(SANDBOX, "sandboxes/<str:owner_id>/")
