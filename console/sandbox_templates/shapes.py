"""The /v1 shapes of templates (docs/api.md, templates): TemplateInfo, TemplateBuild,
BuildLogEntry, tags and aliases, key for key what the 0.1.9 client reads."""

from __future__ import annotations

from typing import Any

from console.models import Template, TemplateBuild, TemplateBuildLog
from console.sandbox_templates.models import BuildStatus
from console.sandbox_templates.refs import BUILTIN_NAMESPACE
from console.timefmt import iso

INFO_FIELDS = (
    "id",
    "name",
    "description",
    "tags",
    "default_tag",
    "builtin",
    "canonical_ref",
    "namespace_slug",
    "visibility",
    "runtime_defaults",
)
CACHE_COUNTERS = tuple(
    f"{kind}_{what}"
    for kind in ("final_artifact", "layer", "file_blob")
    for what in ("hits", "misses", "bypasses", "stores")
)


def builtin_info(name: str) -> dict[str, Any]:
    return {
        "id": f"{BUILTIN_NAMESPACE}/{name}",
        "name": name,
        "description": f"Builtin image {name!r} (Debian)",
        "tags": ["default"],
        "default_tag": "default",
        "builtin": True,
        "canonical_ref": f"{BUILTIN_NAMESPACE}/{name}:default",
        "namespace_slug": BUILTIN_NAMESPACE,
        "visibility": "public",
        "runtime_defaults": None,
    }


def canonical_ref(template: Template) -> str:
    return f"{template.team.slug}/{template.name}:{template.default_tag}"


def runtime_defaults(defaults: dict[str, Any] | None) -> dict[str, Any] | None:
    """The public form: env *names* only (values may be sensitive to the team)."""
    if not defaults:
        return None
    return {
        "default_env_keys": sorted((defaults.get("envs") or {}).keys()),
        "start_cmd": defaults.get("start_cmd"),
        "default_user": defaults.get("user"),
        "default_workdir": defaults.get("workdir"),
        "readiness": defaults.get("readiness"),
    }


def template_info(template: Template) -> dict[str, Any]:
    tags = list(template.tag_rows.order_by("tag").values_list("tag", flat=True))
    default = template.tag_rows.select_related("build").filter(tag=template.default_tag).first()
    return {
        "id": template.public_id,
        "name": template.name,
        "description": template.description,
        "tags": tags,
        "default_tag": template.default_tag,
        "builtin": False,
        "canonical_ref": canonical_ref(template),
        "namespace_slug": template.team.slug,
        "visibility": template.visibility,
        "runtime_defaults": runtime_defaults(default.build.runtime_defaults if default else None),
        "created_at": iso(template.created_at),
        "updated_at": iso(template.updated_at),
    }


def cache_summary(build: TemplateBuild) -> dict[str, int]:
    given = build.cache_summary or {}
    return {name: int(given.get(name, 0)) for name in CACHE_COUNTERS}


def build_dict(build: TemplateBuild) -> dict[str, Any]:
    template = build.template
    ready = build.status == BuildStatus.READY
    duration = (
        int((build.finished_at - build.started_at).total_seconds() * 1000)
        if build.finished_at and build.started_at
        else None
    )
    return {
        "build_id": build.public_id,
        "template_id": template.public_id,
        "name": template.name,
        "tags": list(build.tags or []),
        "status": build.status,
        "build_backend": build.build_backend,
        "source_type": build.source_type,
        "source_digest": build.source_digest or None,
        "context_digest": build.context_digest or None,
        "dockerfile_digest": build.dockerfile_digest or None,
        "triggered_by": build.triggered_by or None,
        "queued_at": iso(build.queued_at),
        "started_at": iso(build.started_at),
        "finished_at": iso(build.finished_at),
        "duration_ms": duration,
        "failure_phase": build.failure_phase or None,
        "build_config": build.build_config or None,
        "cache_summary": cache_summary(build),
        "artifact_availability": {"status": "available" if ready else "unavailable"},
        "promotability": {
            "status": "promotable" if ready else "not_ready",
            "promotable": ready,
        },
        "retention_expires_at": None,
        "runtime_defaults": runtime_defaults(build.runtime_defaults),
        "oci_metadata": build.oci_metadata,
        "artifact_ids": list(build.layers or []),
        "error": build.error or None,
        "error_detail": build.error_detail,
        "retry_of_build_id": build.retry_of.public_id if build.retry_of is not None else None,
        "original_build_id": None,
        "cancel_requested_at": iso(build.cancel_requested_at),
        "cancel_requested_by": build.cancel_requested_by or None,
        "cancellation_reason": build.cancellation_reason or None,
        "canonical_ref": canonical_ref(template),
        "namespace_slug": template.team.slug,
        "visibility": template.visibility,
        "created_at": iso(build.created_at),
        "updated_at": iso(build.updated_at),
    }


def log_entry(row: TemplateBuildLog, build: TemplateBuild) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "build_id": build.public_id,
        "template_id": build.template.public_id,
        "offset": row.offset,
        "timestamp": iso(row.timestamp),
        "kind": row.kind,
        "level": row.level,
        "message": row.message,
        "phase": row.phase or None,
        "step_index": row.step_index,
        "total_steps": build.steps_total or None,
    }
    entry.update(row.extra or {})
    return entry


def snapshot(build: TemplateBuild, offset: int, limit: int = 1000) -> dict[str, Any]:
    rows = list(build.log_rows.filter(offset__gte=offset).order_by("offset")[:limit])
    return {
        "build": build_dict(build),
        "entries": [log_entry(row, build) for row in rows],
        "next_offset": rows[-1].offset + 1 if rows else offset,
    }
