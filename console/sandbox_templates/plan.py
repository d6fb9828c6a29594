"""A build request (docs/templates.md) checked and turned into a plan: the base, the
steps in order, build env, runtime defaults and secrets. Everything the engine can
not honour is refused here, before a build exists, with the reason and where.

Bases: `debian:<suite>` (the suites of console/runtime/image.py SUITES), `python:<v>`
mapped to the suite that ships that Python (with a warning saying so), `ubuntu:<v>`
only with an Ubuntu mirror configured, or another template. Dockerfiles are turned
into the same steps by console/sandbox_templates/dockerfile.py.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from console.errors import DomainError
from console.models import Team, TemplateBuild
from console.runtime.image import STABLE, SUITES
from console.sandbox_templates import refs
from console.sandbox_templates.models import BuildStatus

MAX_STEPS = 60
MAX_LAYER_STEPS = 38  # each file-changing step is a layer (layer_store.MAX_STACK, minus margin)
MAX_COMMAND = 64 * 1024
MAX_PACKAGES = 200
MAX_SECRETS = 20
MAX_SECRET_BYTES = 64 * 1024
MIN_SECRET_CHARS = 4  # shorter values could not be masked in logs without masking noise
MAX_ENVS = 200
PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.:=~_@/<>-]{0,200}$")
SECRET_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
UBUNTU_SUITES = {"22.04": "jammy", "24.04": "noble"}
METADATA_ACTIONS = ("user", "env", "skip_cache")
FILE_ACTIONS = (
    "run",
    "apt_install",
    "pip_install",
    "npm_install",
    "git_clone",
    "make_dir",
    "make_symlink",
    "copy",
    "workdir",
    "rename",
    "remove",
)


@dataclass
class Step:
    action: str
    args: dict[str, Any]
    line: int | None = None  # the Dockerfile line it came from

    def label(self) -> str:
        where = f" (Dockerfile line {self.line})" if self.line else ""
        return f"{self.action}{where}"


@dataclass
class Plan:
    source_type: str
    image: str = "base"  # the builtin image under everything
    suite: str = "bookworm"
    parent: TemplateBuild | None = None
    steps: list[Step] = field(default_factory=list)
    build_envs: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # envs, user, workdir, start_cmd, ...
    secrets: list[dict[str, str]] = field(default_factory=list)
    skip_cache: bool = False
    context: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> blob entry
    warnings: list[str] = field(default_factory=list)
    oci_metadata: dict[str, Any] | None = None
    base_ref: str = ""

    def layer_steps(self) -> int:
        return sum(1 for s in self.steps if s.action not in METADATA_ACTIONS)


def invalid(message: str, **details: Any) -> DomainError:
    return DomainError("invalid_request", message, details=details or None)


def _str(value: Any, what: str, *, limit: int = 4096, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or "\x00" in value:
        raise invalid(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise invalid(f"{what} is longer than {limit} characters")
    return value


def _path(value: Any, what: str) -> str:
    text = _str(value, what, limit=1024)
    return text


def _packages(args: dict[str, Any], action: str) -> list[str]:
    packages = args.get("packages")
    if isinstance(packages, str):
        packages = packages.split()
    if not isinstance(packages, list) or not packages or len(packages) > MAX_PACKAGES:
        raise invalid(f"{action}: packages must be a list of 1 to {MAX_PACKAGES} names")
    for name in packages:
        if not isinstance(name, str) or not PACKAGE.fullmatch(name):
            raise invalid(f"{action}: {name!r} is not a package name")
    return list(packages)


def _envs(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENVS:
        raise invalid(f"{what} must be an object of at most {MAX_ENVS} strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise invalid(f"{what}: {key!r} is not an environment variable name")
        if not isinstance(item, str | int | float | bool) or "\x00" in str(item):
            raise invalid(f"{what}: {key} must be a string")
        out[key] = str(item)
    return out


def step(action: Any, args: dict[str, Any], line: int | None = None) -> Step:
    """One step checked and normalised (its args are exactly what its cache key hashes)."""
    if not isinstance(action, str):
        raise invalid("each step needs an action")
    a = action.lower()
    if a == "run":
        command = args.get("command")
        if isinstance(command, list):
            command = " && ".join(str(c) for c in command)
        out: dict[str, Any] = {"command": _str(command, "run: command", limit=MAX_COMMAND)}
        if args.get("user") is not None:
            out["user"] = _user(args["user"])
        if args.get("secrets"):
            out["secrets"] = [_secret_id(s) for s in args["secrets"]]
        if args.get("heredoc") is not None:
            out["heredoc"] = _str(args["heredoc"], "run: heredoc", limit=MAX_COMMAND, empty=True)
        return Step(a, out, line)
    if a == "apt_install":
        return Step(a, {"packages": _packages(args, a)}, line)
    if a == "pip_install":
        return Step(
            a, {"packages": _packages(args, a), "g": args.get("g", True) is not False}, line
        )
    if a == "npm_install":
        packages = args.get("packages")
        out = {"packages": _packages(args, a) if packages else [], "g": bool(args.get("g"))}
        return Step(a, out, line)
    if a == "git_clone":
        url = _str(args.get("url"), "git_clone: url", limit=2048)
        if not re.match(r"^(https?|git)://|^[\w.-]+@[\w.-]+:", url):
            raise invalid("git_clone: url must be an http(s):// or git:// URL")
        out = {"url": url, "path": _path(args.get("path") or "/workspace", "git_clone: path")}
        if args.get("branch") is not None:
            out["branch"] = _str(args["branch"], "git_clone: branch", limit=200)
        if args.get("depth") is not None:
            depth = args["depth"]
            if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 100000:
                raise invalid("git_clone: depth must be a positive integer")
            out["depth"] = depth
        return Step(a, out, line)
    if a == "make_dir":
        out = {"path": _path(args.get("path"), "make_dir: path")}
        if args.get("mode") is not None:
            out["mode"] = _mode(args["mode"], "make_dir")
        return Step(a, out, line)
    if a == "make_symlink":
        return Step(
            a,
            {
                "target": _path(args.get("target"), "make_symlink: target"),
                "path": _path(args.get("path"), "make_symlink: path"),
            },
            line,
        )
    if a == "copy":
        sources = args.get("sources") or ([args["src"]] if args.get("src") else None)
        if not isinstance(sources, list) or not sources or len(sources) > 1000:
            raise invalid("copy: sources must be a non-empty list of context paths")
        out = {
            "sources": [_str(s, "copy: source", limit=1024) for s in sources],
            "dst": _path(args.get("dst"), "copy: dst"),
        }
        if args.get("mode") is not None:
            out["mode"] = _mode(args["mode"], "copy")
        if args.get("user") is not None:
            out["user"] = _user(args["user"])
        return Step(a, out, line)
    if a == "workdir":
        return Step(a, {"path": _path(args.get("path"), "workdir: path")}, line)
    if a == "user":
        return Step(a, {"user": _user(args.get("user"))}, line)
    if a == "env":
        return Step(a, {"envs": _envs(args.get("envs"), "env: envs")}, line)
    if a == "rename":
        return Step(
            a,
            {
                "src": _path(args.get("src"), "rename: src"),
                "dst": _path(args.get("dst"), "rename: dst"),
                "force": bool(args.get("force")),
            },
            line,
        )
    if a == "remove":
        return Step(
            a,
            {
                "path": _path(args.get("path"), "remove: path"),
                "recursive": bool(args.get("recursive")),
                "force": bool(args.get("force")),
            },
            line,
        )
    if a == "skip_cache":
        return Step(a, {}, line)
    if a == "copy_items":
        raise invalid("copy_items is sent as separate copy steps; send one copy per item")
    if a == "bun_install":
        raise invalid("bun_install is not supported: no Debian suite ships bun (use npm_install)")
    raise invalid(f"unknown step action {action!r}")


def _user(value: Any) -> str:
    if not isinstance(value, str) or not USER.fullmatch(value):
        raise invalid(f"user {value!r} is not a user name")
    return value


def _secret_id(value: Any) -> str:
    if not isinstance(value, str) or not SECRET_ID.fullmatch(value):
        raise invalid(f"secret id {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def _mode(value: Any, what: str) -> str:
    text = str(value)
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        raise invalid(f"{what}: mode {text!r} must be octal like 0644")
    return text


# --- the base -----------------------------------------------------------------------------


def apply_base(plan: Plan, team: Team, base: Any) -> None:
    if not isinstance(base, str) or not base.strip():
        raise invalid("base_image is required (e.g. debian:bookworm)")
    base = base.strip()
    plan.base_ref = base
    kind, colon, version = base.partition(":")
    if kind == "debian" and colon:
        wanted = version
        if version.endswith("-slim"):  # our images are minbase already
            version = version.removesuffix("-slim")
        if version == "stable":
            version = STABLE
        if version != wanted:
            plan.warnings.append(f"debian:{wanted} is built as Debian {version} (minbase)")
        if version not in SUITES:
            raise DomainError(
                "base_image_not_supported",
                f"debian:{version} is not a suite this server builds; use one of "
                + ", ".join(f"debian:{s}" for s in SUITES),
            )
        plan.suite = version
        return
    if kind == "python" and colon:
        wanted = version.split("-", 1)[0]
        suites = {py: suite for suite, py in SUITES.items()}
        if wanted not in suites:
            raise DomainError(
                "base_image_not_supported",
                f"python:{version}: no Debian suite this server builds ships Python {wanted}; "
                "use "
                + " or ".join(f"python:{py} (Debian {suite})" for py, suite in suites.items()),
            )
        plan.suite = suites[wanted]
        plan.warnings.append(
            f"python:{version} is built on Debian {plan.suite}, whose python3 is {wanted} "
            "(Debian's Python, not the python.org image)"
        )
        return
    if kind == "ubuntu" and colon:
        mirror = getattr(settings, "RUNTIME_UBUNTU_MIRROR", "")
        if not mirror:
            raise DomainError(
                "base_image_not_supported",
                f"ubuntu:{version} needs an Ubuntu mirror, and none is configured on this "
                "server; use debian:bookworm, or ask the operator to set RUNTIME_UBUNTU_MIRROR",
            )
        if version not in UBUNTU_SUITES:
            raise DomainError(
                "base_image_not_supported",
                f"ubuntu:{version} is not supported; use "
                + " or ".join(f"ubuntu:{v}" for v in UBUNTU_SUITES),
            )
        plan.suite = f"ubuntu-{UBUNTU_SUITES[version]}"
        return
    # Anything else is a template ref (`demo`, `demo:v2`, `acme/demo`, `tmpl_…`), or an
    # image of another distribution (`node:20`, `oven/bun:1`) that we refuse as such.
    names_a_template = (
        base.startswith(("tmpl_", refs.BUILTIN_NAMESPACE + "/"))
        or ":tb_" in base
        or (":" not in base and "/" not in base)
    )
    try:
        found = refs.resolve(team, base)
    except DomainError:
        if names_a_template:
            raise
        raise _not_debian(base) from None
    if found.builtin is not None:
        plan.image = found.builtin
        return
    if found.build is None or found.build.status != BuildStatus.READY:
        raise DomainError("template_not_found", f"template {base!r} has no ready build to build on")
    plan.parent = found.build
    plan.image = found.build.base_image
    plan.suite = found.build.image_suite


def _not_debian(base: str) -> DomainError:
    return DomainError(
        "base_image_not_supported",
        f"{base!r}: this server builds templates on Debian images only (debian:"
        + "|".join(SUITES)
        + ", python:"
        + "|".join(SUITES.values())
        + ") or on another template (--from-template)",
    )


# --- the request --------------------------------------------------------------------------


def secrets_of(body: dict[str, Any]) -> list[dict[str, str]]:
    raw = body.get("build_secrets")
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SECRETS:
        raise invalid(f"build_secrets must be a list of at most {MAX_SECRETS}")
    out: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise invalid("each build secret must be an object {id, value}")
        value = item.get("value")
        if not isinstance(value, str) or len(value.encode()) > MAX_SECRET_BYTES:
            raise invalid(
                f"build secret values must be strings of at most {MAX_SECRET_BYTES} bytes"
            )
        if len(value) < MIN_SECRET_CHARS:
            raise invalid(
                f"build secret {item.get('id')!r} is shorter than {MIN_SECRET_CHARS} characters: "
                "it could not be masked in build logs"
            )
        out.append({"id": _secret_id(item.get("id")), "value": value})
    return out


def runtime_config(plan: Plan, body: dict[str, Any]) -> None:
    config = body.get("runtime_config")
    if config is not None and not isinstance(config, dict):
        raise invalid("runtime_config must be an object")
    config = config or {}
    if config.get("default_envs") is not None:
        plan.runtime["envs"] = {
            **plan.runtime.get("envs", {}),
            **_envs(config["default_envs"], "runtime_config.default_envs"),
        }
    if config.get("default_user") is not None:
        plan.runtime["user"] = _user(config["default_user"])
    if config.get("default_workdir") is not None:
        plan.runtime["workdir"] = _path(config["default_workdir"], "default_workdir")
    if config.get("readiness") is not None:
        plan.runtime["readiness"] = readiness(config["readiness"])
    start = body.get("start_cmd")
    if start is not None:
        plan.runtime["start_cmd"] = _str(start, "start_cmd", limit=MAX_COMMAND)


def readiness(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("readiness must be an object")
    kind = value.get("kind")
    out: dict[str, Any] = {"kind": kind}
    if kind in ("tcp", "http"):
        port = value.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise invalid("readiness.port must be a port number")
        out["port"] = port
        if kind == "http":
            out["path"] = _str(value.get("path") or "/", "readiness.path", limit=1024)
    elif kind == "command":
        out["command"] = _str(value.get("command"), "readiness.command", limit=MAX_COMMAND)
    elif kind == "timeout":
        ms = value.get("timeout_ms")
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= 600_000:
            raise invalid("readiness.timeout_ms must be from 0 to 600000")
        out["timeout_ms"] = ms
        return out
    else:
        raise invalid("readiness.kind must be tcp, http, command or timeout")
    for name, default, high in (
        ("timeout_secs", 30, 600),
        ("interval_ms", 500, 60_000),
        ("startup_grace_secs", 2, 600),
    ):
        given = value.get(name, default)
        if isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= high:
            raise invalid(f"readiness.{name} must be from 0 to {high}")
        out[name] = given
    return out


def context_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = body.get("build_context")
    if raw is None:
        return {}
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, list) or len(files) > 20000:
        raise invalid("build_context.files must be a list of at most 20000 entries")
    out: dict[str, dict[str, Any]] = {}
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise invalid("each build_context file needs a path")
        path = posixpath.normpath(entry["path"]).lstrip("/")
        if path.startswith("..") or "\x00" in path:
            raise invalid(f"build_context path {entry['path']!r} leaves the context")
        kind = entry.get("entry_type")
        if kind not in ("file", "dir"):
            raise invalid(f"build_context {path}: entry_type must be file or dir")
        item: dict[str, Any] = {"entry_type": kind}
        if entry.get("mode") is not None:
            item["mode"] = _mode(entry["mode"], f"build_context {path}")
        if kind == "file":
            blob = entry.get("blob_id")
            if not isinstance(blob, str) or not re.fullmatch(r"blob_[0-9a-f]{64}", blob):
                if "content_base64" in entry or "_local_path" in entry:
                    raise invalid(
                        "build context files must be uploaded as blobs first "
                        "(POST /v1/templates/blobs/preflight, then PUT each missing blob)"
                    )
                raise invalid(f"build_context {path}: blob_id is missing")
            item["blob_id"] = blob
        out[path] = item
    return out


def build_config(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("build_config") or {}
    if not isinstance(raw, dict):
        raise invalid("build_config must be an object")
    vcpus = raw.get("vcpus", 2)
    memory = raw.get("memory_mib", raw.get("memory_mb", 1024))
    disk = raw.get("disk_mb", 4096)
    for name, value, low, high in (
        ("vcpus", vcpus, 1, settings.SANDBOX_MAX_VCPUS),
        ("memory_mib", memory, 128, settings.SANDBOX_MAX_MEMORY_MB),
        ("disk_mb", disk, 256, settings.SANDBOX_MAX_DISK_MB),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise invalid(f"build_config.{name} must be an integer from {low} to {high}")
    internet = raw.get("internet_access", True)
    if not isinstance(internet, bool):
        raise invalid("build_config.internet_access must be true or false")
    return {"vcpus": vcpus, "memory_mib": memory, "disk_mb": disk, "internet_access": internet}


def from_request(team: Team, body: dict[str, Any]) -> Plan:
    """The plan of a BuildRequest, or DomainError naming what cannot be built."""
    backend = body.get("build_backend")
    if backend not in (None, "native", "buildkit"):
        raise invalid("build_backend must be native or buildkit")
    if body.get("base_image_auth") or body.get("registry_auth"):
        raise invalid(
            "registry credentials are not used: this server builds on Debian images and "
            "templates only, never pulls from a registry"
        )
    if isinstance(body.get("dockerfile"), str):
        from console.sandbox_templates import dockerfile

        plan = dockerfile.plan(team, body["dockerfile"])
    else:
        plan = Plan(source_type="declarative")
        apply_base(plan, team, body.get("base_image"))
        raw_steps = body.get("steps") or []
        if not isinstance(raw_steps, list) or len(raw_steps) > MAX_STEPS:
            raise invalid(f"steps must be a list of at most {MAX_STEPS}")
        for raw in raw_steps:
            if not isinstance(raw, dict):
                raise invalid("each step must be an object {action, ...}")
            args = {k: v for k, v in raw.items() if k != "action"}
            plan.steps.append(step(raw.get("action"), args))
        if plan.parent is not None:
            plan.source_type = "template_base"
    plan.build_envs.update(_envs(body.get("build_envs"), "build_envs"))
    runtime_config(plan, body)
    plan.secrets = secrets_of(body)
    plan.skip_cache = body.get("skip_cache") is True
    plan.context = context_of(body)
    if plan.layer_steps() > MAX_LAYER_STEPS:
        raise invalid(f"a template may have at most {MAX_LAYER_STEPS} file-changing steps")
    _check_references(plan)
    return plan


def _check_references(plan: Plan) -> None:
    known = {s["id"] for s in plan.secrets}
    for item in plan.steps:
        for secret in item.args.get("secrets", []):
            if secret not in known:
                raise invalid(
                    f"step {item.label()} uses secret {secret!r}, which the request does not send"
                )
        if item.action == "copy":
            for source in item.args["sources"]:
                if not context_entries(plan, source):
                    raise invalid(f"{item.label()}: {source!r} is not in the build context")


def context_entries(plan: Plan, source: str) -> list[tuple[str, dict[str, Any]]]:
    """Context entries at or under `source` (a context path), in path order."""
    prefix = posixpath.normpath(source).lstrip("/")
    if prefix in ("", "."):
        return sorted(plan.context.items())
    return sorted(
        (path, entry)
        for path, entry in plan.context.items()
        if path == prefix or path.startswith(prefix + "/")
    )


def public_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request as kept on the build: secret values replaced by their ids."""
    kept = {k: v for k, v in body.items() if k not in ("build_secrets", "base_image_auth")}
    secrets = body.get("build_secrets")
    if isinstance(secrets, list):
        kept["build_secret_ids"] = [s.get("id") for s in secrets if isinstance(s, dict)]
    return kept


def source_digest(body: dict[str, Any]) -> str:
    public = public_request(body)
    public.pop("name", None)
    public.pop("tags", None)
    encoded = json.dumps(public, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()
