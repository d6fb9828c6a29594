"""The server's check of a version's `config` (the client checked it too, but the API is public).

Refuses reserved modes, secret-looking env entries, bad paths and flags this runtime
cannot honour, each with a message that says what to change. Returns the config in
the canonical shape the client digests (`bundle` comes from the manifest).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from console.errors import DomainError
from console.previews.service import PreviewRefused, check_port
from console.runtime import netpolicy
from console.runtime.base import RuntimeError_

LIVE_MODES = ("job", "service")
RESERVED_MODES = ("worker", "triggered", "workspace", "interactive")
WORKSPACE = PurePosixPath("/workspace")
MAX_COMMAND = 4096
MAX_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_JOB_TIMEOUT = 600
DEFAULT_READINESS_TIMEOUT = 60
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TOP_KEYS = {
    "name",
    "mode",
    "template",
    "workdir",
    "install",
    "entrypoint",
    "env",
    "bundle",
    "resources",
    "permissions",
    "service",
    "debug",
    "outputs",
}
_RESOURCE_LIMITS = {"vcpus": 64, "memory_mb": 262_144, "disk_mb": 10_485_760}
_BOOL_PERMISSIONS = {
    "internet_access",
    "public_url",
    "allow_public_traffic",
    "volumes",
    "desktop",
    "pty",
    "debug",
    "retain_on_failure",
}
_INT_PERMISSIONS = {"max_vcpus", "max_memory_mb", "max_disk_mb", "max_timeout_seconds"}
# True for these needs machinery this server does not have yet; refuse rather than ignore.
_UNSUPPORTED_TRUE = {"volumes": "volumes", "desktop": "desktop sessions"}


def invalid(message: str, **kwargs: Any) -> DomainError:
    return DomainError("invalid_request", message, **kwargs)


def check_mode(mode: Any, *, context: str = "agent deployments") -> str:
    if mode in RESERVED_MODES:
        raise invalid(
            f"mode {mode!r} is reserved for future Agent Deployment models; "
            f"{context} support mode job or service",
            suggested_action='Set mode = "job" or mode = "service" in nullspace.agent.toml.',
        )
    if mode not in LIVE_MODES:
        raise invalid(f"mode must be job or service (got {mode!r})")
    return str(mode)


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"config.{name} must be an object")
    return value


def _unknown(section: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(section) - allowed)
    if extra:
        raise invalid(f"unknown key(s) in {where}: {', '.join(extra)}")


def _command(value: Any, name: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise invalid(f"config.{name} is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_COMMAND:
        raise invalid(
            f"config.{name} must be a non-empty shell command of at most {MAX_COMMAND} characters"
        )
    if "\x00" in value:
        raise invalid(f"config.{name} must not contain NUL bytes")
    return value


def _positive_int(value: Any, where: str, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise invalid(f"{where} must be an integer from 1 to {maximum}")
    return value


def check_workdir(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise invalid("config.workdir must be an absolute path under /workspace")
    path = PurePosixPath(value)
    if ".." in path.parts or not (path == WORKSPACE or WORKSPACE in path.parents):
        raise invalid(f"config.workdir must be under /workspace (got {value!r})")
    return str(path)


def _env(config: dict[str, Any]) -> dict[str, list[str]]:
    env = _section(config, "env")
    for key in env:
        if key not in ("required", "optional"):
            raise invalid(
                "config.env stores variable names only (required, optional); "
                "pass values at run time with --env or --env-file"
            )
    out: dict[str, list[str]] = {}
    for key in ("required", "optional"):
        names = env.get(key) or []
        if not isinstance(names, list):
            raise invalid(f"config.env.{key} must be a list of names")
        for name in names:
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise invalid(
                    f"config.env.{key} entries must be variable names, not values (got an entry "
                    "that is not a NAME)"
                )
        out[key] = list(dict.fromkeys(names))
    return out


def _outputs(config: dict[str, Any]) -> dict[str, list[str]]:
    outputs = _section(config, "outputs")
    _unknown(outputs, {"paths"}, "config.outputs")
    paths = outputs.get("paths") or []
    if not isinstance(paths, list) or len(paths) > 50:
        raise invalid("config.outputs.paths must be a list of at most 50 paths")
    for path in paths:
        if not isinstance(path, str) or not path.strip():
            raise invalid("config.outputs.paths entries must be non-empty paths")
        parts = [p for p in path.strip("/").split("/")]
        if any(p in ("", ".", "..") for p in parts):
            raise invalid(f"config.outputs.paths entry {path!r} has an empty, '.' or '..' segment")
    return {"paths": list(paths)}


def _readiness(service: dict[str, Any]) -> dict[str, Any]:
    raw = service.get("readiness")
    if raw is None:
        return {"type": "tcp", "timeout_seconds": DEFAULT_READINESS_TIMEOUT}
    if not isinstance(raw, dict):
        raise invalid("config.service.readiness must be an object {type, path, timeout_seconds}")
    _unknown(raw, {"type", "path", "timeout_seconds"}, "config.service.readiness")
    kind = raw.get("type", "tcp")
    if kind not in ("tcp", "http"):
        raise invalid("config.service.readiness.type must be tcp or http")
    out: dict[str, Any] = {"type": kind}
    if kind == "http":
        path = raw.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 1024:
            raise invalid("config.service.readiness.path must be a path starting with /")
        out["path"] = path
    out["timeout_seconds"] = (
        _positive_int(raw.get("timeout_seconds"), "config.service.readiness.timeout_seconds", 3600)
        or DEFAULT_READINESS_TIMEOUT
    )
    return out


def checked_config(config: Any, *, deployment_mode: str) -> dict[str, Any]:
    """The config as the client sent it, validated; raises DomainError(invalid_request)."""
    if not isinstance(config, dict):
        raise invalid("config must be an object")
    _unknown(config, _TOP_KEYS, "config")
    mode = check_mode(config.get("mode", "job"))
    if mode != deployment_mode:
        raise DomainError(
            "conflict",
            f"this deployment runs mode {deployment_mode}; a {mode} config needs its own deployment",
            suggested_action="Deploy it under another name (--name).",
        )
    template = config.get("template", "base")
    if template != "base":
        raise DomainError(
            "template_not_found",
            f"Template {template!r} not found",
            suggested_action='Use template = "base" until template builds are available.',
        )
    check_workdir(config.get("workdir", "/workspace/project"))
    _command(config.get("install"), "install", required=False)
    _command(config.get("entrypoint"), "entrypoint", required=True)
    _env(config)
    resources = _section(config, "resources")
    _unknown(resources, {*_RESOURCE_LIMITS, "timeout_seconds"}, "config.resources")
    for key, limit in _RESOURCE_LIMITS.items():
        _positive_int(resources.get(key), f"config.resources.{key}", limit)
    _positive_int(
        resources.get("timeout_seconds"), "config.resources.timeout_seconds", MAX_TIMEOUT_SECONDS
    )
    _permissions(config, resources)
    service = _section(config, "service")
    _unknown(service, {"port", "readiness"}, "config.service")
    if mode == "service":
        try:
            check_port(service.get("port"))
        except PreviewRefused as exc:
            raise invalid(f"config.service.port: {exc}") from None
        _readiness(service)
    debug = _section(config, "debug")
    _unknown(debug, {"retain_on_failure", "retain_seconds"}, "config.debug")
    if debug.get("retain_on_failure") is not None and not isinstance(
        debug["retain_on_failure"], bool
    ):
        raise invalid("config.debug.retain_on_failure must be true or false")
    _positive_int(debug.get("retain_seconds"), "config.debug.retain_seconds", MAX_TIMEOUT_SECONDS)
    _outputs(config)
    return config


def _permissions(config: dict[str, Any], resources: dict[str, Any]) -> None:
    permissions = _section(config, "permissions")
    _unknown(
        permissions,
        {*_BOOL_PERMISSIONS, *_INT_PERMISSIONS, "allow_out", "deny_out"},
        "config.permissions",
    )
    for key in _BOOL_PERMISSIONS:
        if permissions.get(key) is not None and not isinstance(permissions[key], bool):
            raise invalid(f"config.permissions.{key} must be true or false")
    for key, what in _UNSUPPORTED_TRUE.items():
        if permissions.get(key):
            raise DomainError(
                "not_implemented",
                f"config.permissions.{key} = true needs {what}, which this server does not offer yet",
            )
    if permissions.get("allow_public_traffic") is False:
        raise DomainError(
            "not_implemented",
            "config.permissions.allow_public_traffic = false is not supported for agent services "
            "yet; the service URL is a signed preview link",
        )
    try:  # the run's sandbox gets these egress rules (docs/runtime.md "Network policy")
        netpolicy.parse(permissions.get("internet_access", True) is not False, network(config))
    except RuntimeError_ as exc:
        raise invalid(str(exc).replace("network.", "config.permissions.", 1)) from None
    pairs = {
        "max_vcpus": "vcpus",
        "max_memory_mb": "memory_mb",
        "max_disk_mb": "disk_mb",
        "max_timeout_seconds": "timeout_seconds",
    }
    for cap, resource in pairs.items():
        limit = _positive_int(permissions.get(cap), f"config.permissions.{cap}", 10_485_760)
        if limit is not None and (resources.get(resource) or 0) > limit:
            raise invalid(
                f"config.resources.{resource} is above config.permissions.{cap} ({limit})"
            )


# --- reading a validated config -------------------------------------------------------------


def env_spec(config: dict[str, Any]) -> dict[str, list[str]]:
    return _env(config)


def network(config: dict[str, Any]) -> dict[str, Any]:
    """`[permissions] allow_out`/`deny_out` as the sandbox's `network` (only those given)."""
    permissions = config.get("permissions") or {}
    return {k: permissions[k] for k in ("allow_out", "deny_out") if permissions.get(k)}


def readiness(config: dict[str, Any]) -> dict[str, Any]:
    return _readiness(_section(config, "service"))


def output_paths(config: dict[str, Any]) -> list[str]:
    return _outputs(config)["paths"]


def timeout_seconds(config: dict[str, Any]) -> int:
    return int(_section(config, "resources").get("timeout_seconds") or DEFAULT_JOB_TIMEOUT)


def canonical(config: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """What `AgentConfig.to_dict()` gave on the client: None dropped, `bundle` from the manifest."""
    out = {k: v for k, v in config.items() if v is not None and k != "bundle"}
    out["bundle"] = {
        "include": list(manifest.get("include_patterns") or []),
        "exclude": list(manifest.get("exclude_patterns") or []),
    }
    return out
