"""Checking what a caller asks a sandbox to be: template, env, metadata, cwd, timeout,
resources, network. Bad input is an `invalid_request` DomainError.

Part of the sandbox domain; callers use console/sandboxes/service.py."""

from __future__ import annotations

import posixpath
from typing import Any

from django.conf import settings

from console.errors import DomainError
from console.models import (
    Project,
    Snapshot,
    TimeoutAction,
)
from console.runtime import netpolicy
from console.runtime.base import RuntimeError_
from console.sandbox_templates import defaults as template_defaults

WORKSPACE = "/workspace"


# Linux's limits on a path and on one name in it (ENAMETOOLONG past them).
PATH_MAX = 4096


NAME_MAX = 255


def validated_create_fields(project: Project, **given: Any) -> dict[str, Any]:
    """What create_sandbox makes of its arguments; a warm-pool checkout compares them
    with the pool's ready sandboxes (console/warm_pools/checkout.py)."""
    return validated_fields(project, **given)


def validated_fields(project: Project, **given: Any) -> dict[str, Any]:
    snapshot: Snapshot | None = given["snapshot"]
    source = snapshot.sandbox if snapshot else None
    template = given["template"] or (source.template if source else "base")
    if snapshot is not None and source is not None:
        template = source.template
    if not isinstance(template, str):
        raise DomainError("template_not_found", f"Template {template!r} not found")
    if snapshot is not None and source is not None:
        chosen = template_defaults.Choice(source.template_build)
    else:
        chosen = template_defaults.choose(project, template)  # template_not_found says why
    template_env = {str(k): str(v) for k, v in (chosen.defaults.get("envs") or {}).items()}
    if chosen.defaults.get("workdir") and given["cwd"] is None and source is None:
        given["cwd"] = chosen.defaults["workdir"]
    timeout_ms = validated_timeout(given["timeout_ms"], default=300_000)
    envs = validated_envs(
        given["envs"] if given["envs"] is not None else (source.envs if source else {})
    )
    metadata = given["metadata"] if given["metadata"] is not None else {}
    if not isinstance(metadata, dict):
        raise DomainError("invalid_request", "metadata must be a JSON object")
    network = given["network"] if given["network"] is not None else {}
    if not isinstance(network, dict):
        raise DomainError("invalid_request", "network must be a JSON object")
    try:  # refuse, never ignore, what the runtime cannot enforce
        netpolicy.parse(given["internet_access"], network)
    except RuntimeError_ as exc:
        raise DomainError("invalid_request", str(exc)) from None
    cwd = given["cwd"] or (source.cwd if source else WORKSPACE)
    return {
        "template": template,
        "template_build": chosen.build,
        "_template_defaults": chosen.defaults if chosen.build is not None else {},
        "envs": {**template_env, **envs} if source is None else envs,
        "metadata": metadata,
        "cwd": validated_cwd(cwd),
        "timeout_ms": timeout_ms,
        "timeout_action": validated_action(given["timeout_action"]),
        "auto_resume": bool(given["auto_resume"]),
        "network": network,
        "internet_access": bool(given["internet_access"]),
        "vcpus": _positive(
            "vcpus", given["vcpus"], source.vcpus if source else 2, settings.SANDBOX_MAX_VCPUS
        ),
        "memory_mb": _positive(
            "memory_mb",
            given["memory_mb"],
            source.memory_mb if source else 512,
            settings.SANDBOX_MAX_MEMORY_MB,
            minimum=64,
        ),
        "disk_mb": _positive(
            "disk_mb",
            given["disk_mb"],
            source.disk_mb if source else None,
            settings.SANDBOX_MAX_DISK_MB,
            minimum=64,
        ),
    }


def validated_timeout(value: Any, *, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DomainError("invalid_request", "timeout_ms must be an integer number of milliseconds")
    value = int(value)
    limit = settings.MAX_SANDBOX_TIMEOUT_MS
    if value < 1000:
        raise DomainError("invalid_request", "timeout_ms must be at least 1000 (one second)")
    if value > limit:
        raise DomainError(
            "invalid_request",
            f"timeout_ms {value} is over this server's limit of {limit} ms "
            f"({limit // 1000} seconds)",
            suggested_action=f"Use a timeout of at most {limit // 1000} seconds.",
            details={"max_timeout_ms": limit},
        )
    return value


def validated_action(value: Any) -> str:
    if value in (None, ""):
        return TimeoutAction.DESTROY
    if value == "pause":
        return TimeoutAction.HIBERNATE
    if value not in TimeoutAction.values:
        raise DomainError("invalid_request", "timeout_action must be destroy or hibernate")
    return value


def validated_envs(envs: Any) -> dict[str, str]:
    """Environment variables a process can be given: names without `=` or NUL (execve
    refuses those, so they are refused here, at create, not at every later exec)."""
    if not isinstance(envs, dict):
        raise DomainError("invalid_request", "envs must be an object of strings")
    checked: dict[str, str] = {}
    for name, value in envs.items():
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise DomainError(
                "invalid_request", f"env name {name!r} must be non-empty, without '=' or NUL"
            )
        if value is not None and not isinstance(value, str | int | float | bool):
            raise DomainError("invalid_request", f"env {name} must be a string")
        text = "" if value is None else str(value)
        if "\x00" in text:
            raise DomainError("invalid_request", f"env {name} must not contain NUL")
        checked[name] = text
    return checked


def validated_cwd(cwd: Any) -> str:
    """Any directory of the sandbox (relative: from /workspace); whether it exists is
    checked when a process starts there."""
    if not isinstance(cwd, str) or not cwd.strip() or "\x00" in cwd:
        raise DomainError("invalid_request", "cwd must be a path")
    if len(cwd.encode("utf-8", "replace")) > PATH_MAX or any(
        len(part.encode("utf-8", "replace")) > NAME_MAX for part in cwd.split("/")
    ):
        raise DomainError(
            "invalid_request", f"cwd is too long (at most {PATH_MAX} bytes, {NAME_MAX} per name)"
        )
    return posixpath.normpath(posixpath.join(WORKSPACE, cwd.strip())).replace("//", "/")


def _positive(
    name: str, value: Any, default: int | None, maximum: int, *, minimum: int = 1
) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise DomainError(
            "invalid_request", f"{name} must be an integer from {minimum} to {maximum}"
        )
    return value
