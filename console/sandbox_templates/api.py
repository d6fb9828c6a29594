"""/v1/templates (docs/api.md, templates): refs, tags, aliases, visibility, claims,
namespaces, builds with their live logs, and build-context blobs. The work is in
console/sandbox_templates/; these views parse and shape."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path, re_path

from console.actor import Actor
from console.api.auth import RAW_BODY, READ, WRITE, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.api.fields import project_fields, requested_fields
from console.errors import DomainError
from console.models import Team, Template, TemplateBuild
from console.runtime.image import VARIANTS
from console.sandbox_templates import blobs, refs, service, shapes
from console.sandbox_templates import plan as plans
from console.sandbox_templates.models import BUILD_TERMINAL, BuildStatus, Visibility
from console.timefmt import iso

STREAM_POLL_SECONDS = 0.2
STREAM_KEEPALIVE_SECONDS = 10
STREAM_MAX_SECONDS = 4 * 3600
MAX_PREFLIGHT_FILES = 20000
MAX_BUILDS_PAGE = 100


def _team(request: HttpRequest) -> Team:
    return cast(Team, request.project.team)  # type: ignore[attr-defined]


def _body(request: HttpRequest) -> dict[str, Any]:
    return cast(dict[str, Any], request.json)  # type: ignore[attr-defined]


def _info_for(found: refs.Resolved) -> dict[str, Any]:
    if found.builtin is not None:
        return shapes.builtin_info(found.builtin)
    assert found.template is not None
    return shapes.template_info(found.template)


# --- refs ---------------------------------------------------------------------------------


@api_key_required(READ)
def list_templates(request: HttpRequest) -> JsonResponse:
    fields = requested_fields(request, shapes.INFO_FIELDS)
    team = _team(request)
    rows = [shapes.builtin_info(name) for name in VARIANTS]
    own = Template.objects.select_related("team").filter(team=team).order_by("name")
    public = (
        Template.objects.select_related("team")
        .filter(visibility=Visibility.PUBLIC)
        .exclude(team=team)
        .order_by("name")
    )
    limit = service.MAX_TEMPLATES_PER_TEAM
    rows += [shapes.template_info(t) for t in own[:limit]]
    rows += [shapes.template_info(t) for t in public[:limit]]
    return JsonResponse([project_fields(r, fields) for r in rows], safe=False)


@api_key_required(READ)
def get_ref(request: HttpRequest, ref: str) -> JsonResponse:
    fields = requested_fields(request, shapes.INFO_FIELDS)
    return JsonResponse(project_fields(_info_for(refs.resolve(_team(request), ref)), fields))


@api_key_required(WRITE)
def delete_ref(request: HttpRequest, ref: str) -> HttpResponse:
    service.delete(_team(request), ref, actor=Actor.of(request))
    return HttpResponse(status=204)


@api_key_required(WRITE)
def assign_tags(request: HttpRequest, ref: str) -> JsonResponse:
    template = service.assign_tags(_team(request), ref, _body(request).get("tags"))
    return JsonResponse(shapes.template_info(template))


@api_key_required(READ)
def list_tags(request: HttpRequest, ref: str) -> JsonResponse:
    found = refs.resolve(_team(request), ref)
    if found.builtin is not None:
        return JsonResponse([], safe=False)
    assert found.template is not None
    rows = found.template.tag_rows.select_related("build").order_by("tag")
    return JsonResponse(
        [
            {"tag": r.tag, "build_id": r.build.public_id, "created_at": iso(r.created_at)}
            for r in rows
        ],
        safe=False,
    )


@api_key_required(WRITE)
def remove_tag(request: HttpRequest, ref: str, tag: str) -> HttpResponse:
    service.remove_tag(_team(request), ref, tag)
    return HttpResponse(status=204)


@api_key_required(READ)
def list_aliases(request: HttpRequest, ref: str) -> JsonResponse:
    found = refs.resolve(_team(request), ref)
    if found.template is None:
        return JsonResponse([], safe=False)
    rows = found.template.aliases.order_by("alias")
    slug = found.template.team.slug
    return JsonResponse(
        [{"alias_ref": f"{slug}/{r.alias}", "created_at": iso(r.created_at)} for r in rows],
        safe=False,
    )


@api_key_required(WRITE)
def remove_alias(request: HttpRequest, ref: str, alias: str) -> HttpResponse:
    service.remove_alias(_team(request), ref, alias.rpartition("/")[2])
    return HttpResponse(status=204)


@api_key_required(WRITE)
def set_visibility(request: HttpRequest, ref: str) -> JsonResponse:
    template = service.set_visibility(_team(request), ref, _body(request).get("visibility"))
    return JsonResponse(shapes.template_info(template))


@api_key_required(WRITE)
def rename(request: HttpRequest, ref: str) -> JsonResponse:
    template = service.rename(_team(request), ref, _body(request).get("new_name"))
    return JsonResponse(shapes.template_info(template))


@api_key_required(READ)
def list_builds(request: HttpRequest, ref: str) -> JsonResponse:
    return _builds_page(request, ref)


@api_key_required(READ)
def list_builds_by_id(request: HttpRequest, template_id: str) -> JsonResponse:
    return _builds_page(request, template_id)


def _builds_page(request: HttpRequest, ref: str) -> JsonResponse:
    found = refs.resolve(_team(request), ref)
    if found.template is None:
        return JsonResponse({"builds": [], "next_cursor": None})
    if found.template.team_id != _team(request).pk:
        raise refs.not_found(ref)
    rows = found.template.builds.select_related("template__team", "retry_of")
    for name, allowed in (
        ("status", BuildStatus.values),
        ("backend", ["native", "buildkit"]),
        ("source_type", ["declarative", "dockerfile", "oci_import", "template_base"]),
    ):
        value = request.GET.get(name)
        if value:
            if value not in allowed:
                raise ApiError("invalid_request", f"{name} must be one of {', '.join(allowed)}")
            rows = rows.filter(**{"build_backend" if name == "backend" else name: value})
    limit = query_int(request, "limit", 50, 1, MAX_BUILDS_PAGE)
    if cursor := request.GET.get("cursor"):
        if not cursor.isdigit():
            raise ApiError("invalid_request", "cursor is not one this server gave out")
        rows = rows.filter(pk__lt=int(cursor))
    page = list(rows.order_by("-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return JsonResponse(
        {
            "builds": [shapes.build_dict(b) for b in page],
            "next_cursor": str(page[-1].pk) if more else None,
        }
    )


# --- claims and namespaces ----------------------------------------------------------------


@api_key_required(WRITE)
def reserve(request: HttpRequest) -> JsonResponse:
    token, canonical, expires = service.reserve(_team(request), _body(request).get("template_ref"))
    return JsonResponse(
        {"claim_token": token, "canonical_ref": canonical, "expires_at": iso(expires)}, status=201
    )


@api_key_required(WRITE)
def release_claim(request: HttpRequest, token: str) -> HttpResponse:
    service.release(_team(request), token)
    return HttpResponse(status=204)


@api_key_required(READ)
def get_namespace(request: HttpRequest, slug: str) -> JsonResponse:
    team = _team(request)
    if slug == refs.BUILTIN_NAMESPACE:
        return JsonResponse({"slug": slug, "kind": "system", "is_default": False})
    if slug != team.slug:
        raise ApiError("template_namespace_not_found", f"Namespace {slug!r} not found")
    return JsonResponse({"slug": slug, "kind": "user", "is_default": True})


# --- builds ---------------------------------------------------------------------------------


def _start(request: HttpRequest) -> TemplateBuild:
    return service.start_build(
        request.project,  # type: ignore[attr-defined]
        _body(request),
        actor=Actor.of(request),
    )


@api_key_required(WRITE)
def build_background(request: HttpRequest) -> JsonResponse:
    build = _start(request)
    return JsonResponse(shapes.build_dict(_fresh(build)), status=202)


@api_key_required(WRITE)
def build_foreground(request: HttpRequest) -> StreamingHttpResponse:
    build = _start(request)
    return _sse(build.pk, 0, follow=True)


def _fresh(build: TemplateBuild) -> TemplateBuild:
    return TemplateBuild.objects.select_related("template__team", "retry_of").get(pk=build.pk)


@api_key_required(READ)
def build_status(request: HttpRequest, build_id: str) -> JsonResponse:
    build = service.get_build(_team(request), build_id)
    offset = query_int(request, "offset", 0, 0, 10_000_000)
    return JsonResponse(shapes.snapshot(build, offset))


@api_key_required(READ)
def build_logs(request: HttpRequest, build_id: str) -> StreamingHttpResponse:
    build = service.get_build(_team(request), build_id)
    follow = request.GET.get("follow", "false").lower()
    if follow not in ("true", "false", "1", "0"):
        raise ApiError("invalid_request", "follow must be true or false")
    start = query_int(request, "cursor", -1, -1, 10_000_000)
    if start < 0:
        start = query_int(request, "offset", 0, 0, 10_000_000)
    return _sse(build.pk, start, follow=follow in ("true", "1"))


@api_key_required(WRITE)
def cancel_build(request: HttpRequest, build_id: str) -> JsonResponse:
    build = service.get_build(_team(request), build_id)
    reason = _body(request).get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError("invalid_request", "reason must be a string")
    build = service.cancel(build, reason, actor=Actor.of(request))
    return JsonResponse(shapes.snapshot(_fresh(build), 0))


@api_key_required(WRITE)
def retry_build(request: HttpRequest, build_id: str) -> JsonResponse:
    build = service.get_build(_team(request), build_id)
    retried = service.retry(build, _body(request), actor=Actor.of(request))
    return JsonResponse(shapes.build_dict(_fresh(retried)), status=202)


@api_key_required(WRITE)
def promote_build(request: HttpRequest, build_id: str) -> JsonResponse:
    build = service.get_build(_team(request), build_id)
    template = service.promote(build, _body(request).get("tag"))
    return JsonResponse(shapes.template_info(template))


@api_key_required(WRITE)
def validate_build(request: HttpRequest) -> JsonResponse:
    try:
        plan = plans.from_request(_team(request), _body(request))
    except DomainError as exc:
        return JsonResponse(
            {"valid": False, "errors": [{"code": exc.code, "message": exc.message}], "warnings": []}
        )
    return JsonResponse({"valid": True, "errors": [], "warnings": plan.warnings})


@api_key_required(WRITE)
def plan_build(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    plan = plans.from_request(_team(request), body)
    result: dict[str, Any] = {
        "build_backend": "native",
        "source_type": plan.source_type,
        "build_plan": {
            "image": plan.image,
            "suite": plan.suite,
            "parent_build_id": plan.parent.public_id if plan.parent else None,
            "steps": [{"action": s.action, **s.args} for s in plan.steps],
        },
        "warnings": plan.warnings,
        "requires_base_image_auth": False,
        "source_digest": plans.source_digest(body),
    }
    return JsonResponse(result)


# --- the log stream -----------------------------------------------------------------------


def _new_entries(build_pk: int, after: int) -> tuple[list[dict[str, Any]], bool]:
    build = TemplateBuild.objects.select_related("template__team").get(pk=build_pk)
    rows = list(build.log_rows.filter(offset__gte=after).order_by("offset")[:500])
    return [shapes.log_entry(r, build) for r in rows], build.status in BUILD_TERMINAL


def _sse(build_pk: int, start: int, *, follow: bool) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        _events(build_pk, start, follow), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


async def _events(build_pk: int, after: int, follow: bool) -> AsyncIterator[str]:
    """Entries from `after` on as they land; with follow, until the build is over."""
    fetch = sync_to_async(_new_entries, thread_sensitive=False)
    deadline = time.monotonic() + STREAM_MAX_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        entries, terminal = await fetch(build_pk, after)
        for entry in entries:
            after = entry["offset"] + 1
            yield f"data: {json.dumps(entry)}\n\n"
        if entries:
            quiet_since = time.monotonic()
            if any(e["kind"] in ("end", "error", "cancelled") for e in entries) and terminal:
                entries, _ = await fetch(build_pk, after)
                for entry in entries:
                    after = entry["offset"] + 1
                    yield f"data: {json.dumps(entry)}\n\n"
                return
            continue
        if not follow:
            return
        if terminal:
            # Over without a final entry seen: one more look (it commits with the status).
            entries, _ = await fetch(build_pk, after)
            for entry in entries:
                after = entry["offset"] + 1
                yield f"data: {json.dumps(entry)}\n\n"
            return
        if time.monotonic() - quiet_since > STREAM_KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(STREAM_POLL_SECONDS)


# --- blobs ------------------------------------------------------------------------------------


@api_key_required(WRITE)
def preflight(request: HttpRequest) -> JsonResponse:
    files = _body(request).get("files")
    if not isinstance(files, list) or len(files) > MAX_PREFLIGHT_FILES:
        raise ApiError(
            "invalid_request", f"files must be a list of at most {MAX_PREFLIGHT_FILES} entries"
        )
    team_pk = _team(request).pk
    answer = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ApiError("invalid_request", "each file needs a path")
        kind = entry.get("entry_type")
        item: dict[str, Any] = {"path": entry["path"], "entry_type": kind}
        if isinstance(entry.get("mode"), str):
            item["mode"] = entry["mode"]
        if kind == "dir":
            item.update({"missing": False, "blob_id": ""})
            answer.append(item)
            continue
        if kind != "file":
            raise ApiError("invalid_request", f"{entry['path']}: entry_type must be file or dir")
        sha = entry.get("sha256")
        size = entry.get("size_bytes")
        if (
            not isinstance(sha, str)
            or len(sha) != 64
            or any(c not in "0123456789abcdef" for c in sha)
        ):
            raise ApiError("invalid_request", f"{entry['path']}: sha256 must be 64 hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ApiError("invalid_request", f"{entry['path']}: size_bytes must be an integer")
        if size > settings.TEMPLATE_MAX_CONTEXT_FILE_BYTES:
            raise ApiError(
                "payload_too_large",
                f"{entry['path']}: build context files may hold at most "
                f"{settings.TEMPLATE_MAX_CONTEXT_FILE_BYTES} bytes",
            )
        blob = blobs.blob_id(sha)
        missing = bool(entry.get("force_upload")) or not blobs.exists(team_pk, blob)
        item.update({"missing": missing, "blob_id": blob})
        answer.append(item)
    return JsonResponse({"files": answer})


@api_key_required(WRITE, body=RAW_BODY)
def put_blob(request: HttpRequest, blob_id: str) -> HttpResponse:
    def chunks() -> Any:
        while chunk := request.read(blobs.CHUNK):
            yield chunk

    blobs.store(_team(request).pk, blob_id, chunks(), settings.TEMPLATE_MAX_CONTEXT_FILE_BYTES)
    return HttpResponse(status=204)


_ref = r"^templates/refs/(?P<ref>.+?)"
urlpatterns = [
    path("templates", methods(GET=list_templates), name="v1-templates"),
    path("templates/build", methods(POST=build_foreground), name="v1-template-build"),
    path("templates/builds", methods(POST=build_background), name="v1-template-builds"),
    path(
        "templates/builds/<str:build_id>",
        methods(GET=build_status),
        name="v1-template-build-status",
    ),
    path(
        "templates/builds/<str:build_id>/logs",
        methods(GET=build_logs),
        name="v1-template-build-logs",
    ),
    path(
        "templates/builds/<str:build_id>/cancel",
        methods(POST=cancel_build),
        name="v1-template-build-cancel",
    ),
    path(
        "templates/builds/<str:build_id>/retry",
        methods(POST=retry_build),
        name="v1-template-build-retry",
    ),
    path(
        "templates/builds/<str:build_id>/promote",
        methods(POST=promote_build),
        name="v1-template-build-promote",
    ),
    path("templates/validate", methods(POST=validate_build), name="v1-template-validate"),
    path("templates/plan", methods(POST=plan_build), name="v1-template-plan"),
    path("templates/blobs/preflight", methods(POST=preflight), name="v1-template-blob-preflight"),
    path("templates/blobs/<str:blob_id>", methods(PUT=put_blob), name="v1-template-blob"),
    path("templates/claims", methods(POST=reserve), name="v1-template-claims"),
    path("templates/claims/<str:token>", methods(DELETE=release_claim), name="v1-template-claim"),
    path(
        "templates/namespaces/<str:slug>", methods(GET=get_namespace), name="v1-template-namespace"
    ),
    path(
        "templates/<str:template_id>/builds",
        methods(GET=list_builds_by_id),
        name="v1-template-id-builds",
    ),
    re_path(_ref + r"/tags/(?P<tag>[^/]+)$", methods(DELETE=remove_tag), name="v1-template-tag"),
    re_path(_ref + r"/tags$", methods(GET=list_tags, POST=assign_tags), name="v1-template-tags"),
    re_path(
        _ref + r"/aliases/(?P<alias>.+)$", methods(DELETE=remove_alias), name="v1-template-alias"
    ),
    re_path(_ref + r"/aliases$", methods(GET=list_aliases), name="v1-template-aliases"),
    re_path(_ref + r"/visibility$", methods(PATCH=set_visibility), name="v1-template-visibility"),
    re_path(_ref + r"/rename$", methods(POST=rename), name="v1-template-rename"),
    re_path(_ref + r"/builds$", methods(GET=list_builds), name="v1-template-ref-builds"),
    re_path(_ref + r"$", methods(GET=get_ref, DELETE=delete_ref), name="v1-template-ref"),
]
