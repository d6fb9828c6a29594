"""Checking a warm pool's fields on create and update: every refusal is an DomainError that
names the field. The bounds are listed in docs/limits.md."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from console.errors import DomainError
from console.models import CheckoutMode, Project, VersionPolicy, WarmPool
from console.sandbox_templates import refs
from console.warm_pools.templates import pin

# Bounds (docs/limits.md).
MAX_READY = 20
MAX_LABELS = 32
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 255
MAX_METADATA_BYTES = 16 * 1024
MAX_NAME = 63
MAX_SECONDS = 7 * 24 * 3600

CREATE_KEYS = frozenset(
    {
        "template_ref",
        "name",
        "min_ready",
        "max_ready",
        "resources",
        "idle_timeout_seconds",
        "stale_after_seconds",
        "checkout_policy",
        "version_policy",
        "track_tag",
        "labels",
        "metadata",
    }
)
REQUIRED = ("template_ref", "name", "min_ready", "max_ready")


def validated(
    project: Project, body: dict[str, Any], *, current: WarmPool | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body["name"])
    if "template_ref" in body:
        ref = body["template_ref"]
        if not isinstance(ref, str) or not ref.strip() or len(ref) > 200:
            raise DomainError("invalid_request", "template_ref must be a template name or ref")
        fields["template_ref"] = ref.strip()
    low = body.get("min_ready", current.min_ready if current else None)
    high = body.get("max_ready", current.max_ready if current else None)
    if "min_ready" in body or "max_ready" in body:
        low = _count("min_ready", low)
        high = _count("max_ready", high)
        if low > high:
            raise DomainError(
                "invalid_request", f"min_ready ({low}) must not be more than max_ready ({high})"
            )
        limit = project.running_sandbox_limit
        if low > limit:
            raise DomainError(
                "invalid_request",
                f"min_ready {low} is more than this project may run at once ({limit})",
                suggested_action=f"Use --min-ready {limit} or less.",
                details={"running_sandbox_limit": limit},
            )
        fields.update(min_ready=low, max_ready=high)
    if "resources" in body:
        fields.update(_resources(body["resources"], current))
    for key in ("idle_timeout_seconds", "stale_after_seconds"):
        if key in body:
            fields[key] = _seconds(key, body[key])
    if "checkout_policy" in body:
        mode = body["checkout_policy"]
        if mode not in CheckoutMode.values:
            raise DomainError(
                "invalid_request", "checkout_policy must be prefer, require or bypass"
            )
        fields["checkout_policy"] = mode
    if {"template_ref", "version_policy", "track_tag"} & set(body):
        fields.update(_pinned(project, body, fields, current))
    if "labels" in body:
        fields["labels"] = _labels(body["labels"])
    if "metadata" in body:
        fields["metadata"] = _metadata(body["metadata"])
    return fields


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise DomainError("invalid_request", f"name must be 1 to {MAX_NAME} characters")
    return value.strip()


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_READY:
        raise DomainError(
            "invalid_request",
            f"{name} must be an integer from 0 to {MAX_READY}",
            details={"max_ready_limit": MAX_READY},
        )
    return value


def _resources(value: Any, current: WarmPool | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DomainError("invalid_request", "resources must be an object")
    unknown = sorted(set(value) - {"vcpus", "memory_mb", "disk_mb"})
    if unknown:
        raise DomainError("invalid_request", f"Unknown resources field(s): {', '.join(unknown)}")
    return {
        "vcpus": _bounded(
            "resources.vcpus",
            value.get("vcpus"),
            current.vcpus if current else 2,
            1,
            settings.SANDBOX_MAX_VCPUS,
        ),
        "memory_mb": _bounded(
            "resources.memory_mb",
            value.get("memory_mb"),
            current.memory_mb if current else 512,
            64,
            settings.SANDBOX_MAX_MEMORY_MB,
        ),
        "disk_mb": _bounded(
            "resources.disk_mb",
            value.get("disk_mb"),
            current.disk_mb if current else None,
            64,
            settings.SANDBOX_MAX_DISK_MB,
        ),
    }


def _bounded(name: str, value: Any, default: Any, low: int, high: int) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DomainError("invalid_request", f"{name} must be an integer from {low} to {high}")
    return value


def _seconds(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SECONDS:
        raise DomainError("invalid_request", f"{name} must be an integer from 1 to {MAX_SECONDS}")
    return value


def _pinned(
    project: Project, body: dict[str, Any], fields: dict[str, Any], current: WarmPool | None
) -> dict[str, Any]:
    """The template and build the pool makes, from its ref, version policy and tag
    (docs/warm-pools.md, "Pinned or tracking a tag")."""
    policy = body.get("version_policy", current.version_policy if current else None)
    policy = policy or VersionPolicy.PINNED_BUILD
    if policy not in VersionPolicy.values:
        raise DomainError("invalid_request", "version_policy must be pinned_build or track_tag")
    tag = body.get("track_tag")
    if tag is None and current is not None and "version_policy" not in body:
        tag = current.track_tag or None
    if policy == VersionPolicy.TRACK_TAG:
        if tag is None:
            raise DomainError(
                "invalid_request",
                "version_policy track_tag needs track_tag, the tag to follow",
                suggested_action="Add --track-tag TAG (e.g. stable).",
                details={"field": "track_tag"},
            )
        tag = refs.check_tag(tag)
    elif tag is not None:
        raise DomainError(
            "invalid_request",
            "track_tag needs version_policy track_tag (a pinned pool follows no tag)",
            suggested_action="Add --version-policy track_tag, or leave --track-tag out.",
            details={"field": "track_tag"},
        )
    if (
        policy == VersionPolicy.PINNED_BUILD
        and current is not None
        and "template_ref" not in fields
    ):
        # Stop following the tag: the pool keeps the build it has now.
        return {"version_policy": policy, "track_tag": ""}
    ref = fields.get("template_ref", current.template_ref if current else "")
    chosen = pin(project, ref, track_tag=tag or "")
    return {
        "version_policy": policy,
        "track_tag": tag or "",
        "template": chosen.template,
        "custom_template": chosen.custom_template,
        "template_build": chosen.build,
    }


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise DomainError("invalid_request", "labels must be an object of strings")
    if len(value) > MAX_LABELS:
        raise DomainError("invalid_request", f"At most {MAX_LABELS} labels")
    for key, text in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_LABEL_KEY or "=" in key:
            raise DomainError(
                "invalid_request", f"label name {key!r} must be 1 to {MAX_LABEL_KEY} characters"
            )
        if not isinstance(text, str) or len(text) > MAX_LABEL_VALUE:
            raise DomainError(
                "invalid_request", f"label {key} must be a string of at most {MAX_LABEL_VALUE}"
            )
    return dict(value)


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DomainError("invalid_request", "metadata must be a JSON object")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise DomainError("invalid_request", f"metadata must be at most {MAX_METADATA_BYTES} bytes")
    return value
