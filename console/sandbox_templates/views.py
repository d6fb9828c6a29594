"""Template pages: the list (tags, visibility, last build), a template (builds with duration
and cache hits, tags, aliases, visibility), the form for a declarative build, and a build
with its live log (server-sent events, one phase per step, levels coloured). The pages
render what exists first, so they are complete without JavaScript."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.access import team_member_required
from console.actor import Actor
from console.errors import DomainError
from console.htmx import render_page
from console.models import Role, Template, TemplateBuild
from console.runtime.image import SUITES, VARIANTS
from console.sandbox_templates import service, shapes
from console.sandbox_templates.models import BUILD_TERMINAL, Visibility

LIST = "console/sandbox_templates/list.html"
DETAIL = "console/sandbox_templates/detail.html"
NEW = "console/sandbox_templates/new.html"
BUILD = "console/sandbox_templates/build.html"
LOG_PAGE = 5000
STREAM_POLL_SECONDS = 0.25
STREAM_MAX_SECONDS = 3600
BASES = [f"debian:{s}" for s in SUITES] + [f"python:{v}" for v in SUITES.values()]


def _template(request: HttpRequest, name: str) -> Template:
    return get_object_or_404(
        Template.objects.select_related("team"),
        team=request.team,  # type: ignore[attr-defined]
        name=name,
    )


def _build(request: HttpRequest, build_id: str) -> TemplateBuild:
    return get_object_or_404(
        TemplateBuild.objects.select_related("template__team", "retry_of"),
        template__team=request.team,  # type: ignore[attr-defined]
        public_id=build_id,
    )


def _urls(request: HttpRequest) -> dict[str, str]:
    return {
        "team_slug": request.team.slug,  # type: ignore[attr-defined]
        "project_slug": request.project.slug,  # type: ignore[attr-defined]
    }


def _duration(build: TemplateBuild) -> float | None:
    if build.started_at is None:
        return None
    from django.utils import timezone

    end = build.finished_at or timezone.now()
    return round((end - build.started_at).total_seconds(), 1)


@require_GET
@team_member_required(Role.VIEWER)
def template_list(request: HttpRequest) -> HttpResponse:
    team = request.team  # type: ignore[attr-defined]
    rows = []
    for template in Template.objects.filter(team=team).order_by("name")[:500]:
        last = template.builds.order_by("-pk").first()
        tags = list(template.tag_rows.order_by("tag").values_list("tag", flat=True))
        rows.append({"template": template, "last": last, "tags": tags})
    context = {"rows": rows, "builtins": sorted(VARIANTS)}
    return render_page(request, LIST, context)


@require_http_methods(["GET", "POST"])
@team_member_required(Role.VIEWER)
def template_detail(request: HttpRequest, name: str) -> HttpResponse:
    template = _template(request, name)
    if request.method == "POST":
        if not request.membership.has_role(Role.MEMBER):  # type: ignore[attr-defined]
            return HttpResponse(status=403)
        visibility = request.POST.get("visibility", "")
        if visibility in Visibility.values:
            service.set_visibility(template.team, template.public_id, visibility)
            messages.success(request, f"{template.name} is now {visibility}.")
        return redirect(
            reverse("template-detail", kwargs={**_urls(request), "name": template.name})
        )
    builds = [
        {"build": b, "duration": _duration(b)}
        for b in template.builds.select_related("retry_of").order_by("-pk")[:50]
    ]
    context = {
        "template": template,
        "info": shapes.template_info(template),
        "builds": builds,
        "tags": list(template.tag_rows.select_related("build").order_by("tag")),
        "aliases": list(template.aliases.order_by("alias")),
        "can_act": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render_page(request, DETAIL, context)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _form_body(post: Any) -> dict[str, Any]:
    """A BuildRequest from the form: the same checks as the API apply to it."""
    steps: list[dict[str, Any]] = []
    if packages := post.get("apt_install", "").split():
        steps.append({"action": "apt_install", "packages": packages})
    if packages := post.get("pip_install", "").split():
        steps.append({"action": "pip_install", "packages": packages})
    for command in _lines(post.get("run", "")):
        steps.append({"action": "run", "command": command})
    if workdir := post.get("workdir", "").strip():
        steps.append({"action": "workdir", "path": workdir})
    envs = {}
    for line in _lines(post.get("envs", "")):
        key, sep, value = line.partition("=")
        if not sep:
            raise DomainError("invalid_request", f"env line {line!r} must be KEY=VALUE")
        envs[key.strip()] = value
    body: dict[str, Any] = {
        "name": post.get("name", "").strip(),
        "base_image": post.get("base_image", ""),
        "steps": steps,
    }
    runtime: dict[str, Any] = {}
    if envs:
        runtime["default_envs"] = envs
    if workdir:
        runtime["default_workdir"] = workdir
    if runtime:
        body["runtime_config"] = runtime
    if start := post.get("start_cmd", "").strip():
        body["start_cmd"] = start
    if post.get("skip_cache"):
        body["skip_cache"] = True
    return body


@require_http_methods(["GET", "POST"])
@team_member_required(Role.MEMBER)
def build_new(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        try:
            build = service.start_build(
                request.project,  # type: ignore[attr-defined]
                _form_body(request.POST),
                actor=Actor.of(request),
            )
        except DomainError as exc:
            error = exc.message
        else:
            return redirect(
                reverse("template-build", kwargs={**_urls(request), "build_id": build.public_id})
            )
    context = {"bases": BASES, "error": error, "form": request.POST}
    return render_page(request, NEW, context)


def _phases(build: TemplateBuild, rows: list[Any]) -> list[dict[str, Any]]:
    """Log entries grouped by phase, in order (a phase per step)."""
    groups: list[dict[str, Any]] = []
    for row in rows:
        phase = row.phase or "build"
        if not groups or groups[-1]["phase"] != phase:
            groups.append({"phase": phase, "entries": []})
        groups[-1]["entries"].append(row)
    return groups


@require_GET
@team_member_required(Role.VIEWER)
def build_detail(request: HttpRequest, build_id: str) -> HttpResponse:
    build = _build(request, build_id)
    rows = list(build.log_rows.order_by("offset")[:LOG_PAGE])
    context = {
        "build": build,
        "phases": _phases(build, rows),
        "next_offset": rows[-1].offset + 1 if rows else 0,
        "live": build.status not in BUILD_TERMINAL,
        "duration": _duration(build),
        "can_act": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render_page(request, BUILD, context)


@require_POST
@team_member_required(Role.MEMBER)
def build_cancel(request: HttpRequest, build_id: str) -> HttpResponse:
    build = _build(request, build_id)
    service.cancel(build, "cancelled in the console", actor=Actor.of(request))
    return redirect(reverse("template-build", kwargs={**_urls(request), "build_id": build_id}))


@require_GET
@team_member_required(Role.VIEWER)
def build_log_stream(request: HttpRequest, build_id: str) -> HttpResponseBase:
    """Server-sent events: each entry from `after` on as it lands, then `end`."""
    build = _build(request, build_id)
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = max(0, int(raw))
    except ValueError:
        after = 0
    response = StreamingHttpResponse(_events(build.pk, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


def _new(build_pk: int, after: int) -> tuple[list[dict[str, Any]], bool, str]:
    build = TemplateBuild.objects.select_related("template__team").get(pk=build_pk)
    rows = list(build.log_rows.filter(offset__gte=after).order_by("offset")[:500])
    entries = [
        {
            "offset": r.offset,
            "time": r.timestamp.strftime("%H:%M:%S"),
            "kind": r.kind,
            "level": r.level,
            "phase": r.phase or "build",
            "message": r.message,
        }
        for r in rows
    ]
    return entries, build.status in BUILD_TERMINAL, build.status


async def _events(build_pk: int, after: int) -> AsyncIterator[str]:
    fetch = sync_to_async(_new, thread_sensitive=False)
    deadline = time.monotonic() + STREAM_MAX_SECONDS
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline:
        entries, terminal, status = await fetch(build_pk, after)
        for entry in entries:
            after = entry["offset"] + 1
            yield f"id: {after}\nevent: entry\ndata: {json.dumps(entry)}\n\n"
        if terminal and not entries:
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        if not entries:
            await asyncio.sleep(STREAM_POLL_SECONDS)


P = "t/<slug:team_slug>/p/<slug:project_slug>/templates/"
urlpatterns = [
    path(P, template_list, name="template-list"),
    path(P + "new/", build_new, name="template-new"),
    path(P + "builds/<str:build_id>/", build_detail, name="template-build"),
    path(P + "builds/<str:build_id>/cancel/", build_cancel, name="template-build-cancel"),
    path(P + "builds/<str:build_id>/log/", build_log_stream, name="template-build-log"),
    path(P + "<str:name>/", template_detail, name="template-detail"),
]
