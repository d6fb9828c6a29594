"""The sandbox domain: every state change of a sandbox or snapshot goes through here.

Used by the /v1 API, the console pages, the worker (timeouts) and the gateway
(wake-on-traffic). Functions raise DomainError with the contract's codes, so every
caller can show the same message. State changes are claimed with a conditional
UPDATE (status + `transition`), so a double pause, resume or kill is harmless, and
each one records a lifecycle event.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.actor import SYSTEM, Actor
from console.errors import DomainError
from console.models import (
    CodeContext,
    EventStatus,
    Operation,
    Project,
    Sandbox,
    SandboxStatus,
    Snapshot,
    SnapshotKind,
    TimeoutAction,
    Volume,
    WarmPool,
)
from console.runtime import get_driver, netpolicy
from console.runtime.base import CreateSpec, ExecRequest, ExecResult, ProcessLogs, RuntimeError_
from console.sandbox_templates import defaults as template_defaults
from console.sandboxes.lifecycle import record_event
from console.sandboxes.owner import this_instance, this_process
from console.timefmt import iso
from console.tokens import TRAFFIC, new_secret
from console.volumes import service as volume_domain

log = logging.getLogger(__name__)

T = TypeVar("T")

WORKSPACE = "/workspace"
# Linux's limits on a path and on one name in it (ENAMETOOLONG past them).
PATH_MAX = 4096
NAME_MAX = 255
# Statuses that count against a project's running-sandbox quota.
ACTIVE = (SandboxStatus.CREATING, SandboxStatus.RUNNING)
# A transition older than this is taken as abandoned (the process died mid-way).
STALE_TRANSITION = timedelta(minutes=10)
# Lifecycle event reasons the client knows: what asked for the change.
REASON_MANUAL = "manual"  # a destroy someone asked for (API or console)
REASON_TIMEOUT = "timeout"

SANDBOX_FIELDS = (
    "id",
    "status",
    "config",
    "template",
    "metadata",
    "created_at",
    "started_at",
    "timeout_ms",
    "timeout_at",
    "expires_at",
    "timeout_action",
    "cwd",
    "snapshot_id",
    "internet_access",
    "network",
)
_METADATA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


# --- lookups ----------------------------------------------------------------------------


def get_sandbox(project: Project, public_id: str, *, include_gone: bool = False) -> Sandbox:
    """The project's sandbox; any other project's (or none) is `sandbox_not_found`.

    A destroyed sandbox (killed, timed out, or resumed under a new id) is gone: not found,
    unless `include_gone` (its lifecycle history stays readable)."""
    sandbox = (
        Sandbox.objects.select_related("pause_snapshot", "project")
        .filter(project=project, public_id=public_id)
        .visible()
        .first()
    )
    if sandbox is None or (sandbox.status == SandboxStatus.DESTROYED and not include_gone):
        raise DomainError("sandbox_not_found", f"Sandbox {public_id} not found")
    return sandbox


def get_snapshot(project: Project, public_id: str) -> Snapshot:
    snapshot = Snapshot.objects.filter(project=project, public_id=public_id).first()
    if snapshot is None:
        raise DomainError("snapshot_not_found", f"Snapshot {public_id} not found")
    return snapshot


def require_running(sandbox: Sandbox) -> None:
    """Refuse work on a sandbox that cannot run it, saying what to do instead."""
    sandbox.refresh_from_db(fields=["status", "transition", "pause_snapshot"])
    if sandbox.status == SandboxStatus.RUNNING:
        return
    if sandbox.status == SandboxStatus.PAUSED:
        snap = sandbox.pause_snapshot.public_id if sandbox.pause_snapshot else sandbox.public_id
        raise DomainError(
            "sandbox_not_ready",
            f"Sandbox {sandbox.public_id} is paused",
            suggested_action=f"Resume it first: nullspace sandbox resume {snap}",
        )
    if sandbox.status in (SandboxStatus.DESTROYED, SandboxStatus.ERROR):
        raise DomainError(
            "sandbox_not_found",
            f"Sandbox {sandbox.public_id} is {sandbox.status}",
            suggested_action="Create a new sandbox.",
        )
    raise DomainError(
        "sandbox_not_ready",
        f"Sandbox {sandbox.public_id} is {sandbox.status}",
        retryable=True,
        suggested_action="Retry in a moment.",
    )


# --- shapes -----------------------------------------------------------------------------


def sandbox_to_dict(sandbox: Sandbox, *, traffic_access_token: str | None = None) -> dict[str, Any]:
    """SandboxInfo (contract 2.3). `traffic_access_token` only in the create answer."""
    config: dict[str, Any] = {"vcpus": sandbox.vcpus, "memory_mb": sandbox.memory_mb}
    if sandbox.disk_mb:
        config["disk_mb"] = sandbox.disk_mb
    timeout_at = iso(sandbox.timeout_at)
    body: dict[str, Any] = {
        "id": sandbox.public_id,
        "status": sandbox.status,
        "config": config,
        "template": sandbox.template,
        "metadata": _metadata_with_volumes(sandbox),
        "created_at": iso(sandbox.created_at),
        "started_at": iso(sandbox.started_at),
        "timeout_ms": sandbox.timeout_ms,
        "timeout_at": timeout_at,
        "expires_at": timeout_at,
        "timeout_action": sandbox.timeout_action,
        "cwd": sandbox.cwd,
        "snapshot_id": None,
        # What the sandbox may reach (shown by `sandbox get --fields network,internet_access`).
        "internet_access": sandbox.internet_access,
        "network": network_view(sandbox),
    }
    if sandbox.status == SandboxStatus.PAUSED:
        # The client auto-resumes with this id; a paused sandbox without one is unusable.
        snapshot = sandbox.pause_snapshot
        body["snapshot_id"] = snapshot.public_id if snapshot else sandbox.public_id
    if traffic_access_token is not None:
        body["traffic_access_token"] = traffic_access_token
    return body


def network_view(sandbox: Sandbox) -> dict[str, Any]:
    """The sandbox's network settings with its effective egress policy spelled out."""
    policy = netpolicy.parse(sandbox.internet_access, sandbox.network)
    return {**(sandbox.network or {}), "egress_policy": netpolicy.as_dict(policy)}


def _metadata_with_volumes(sandbox: Sandbox) -> dict[str, Any]:
    """The client reads a sandbox's mounts from `metadata.volume_attachments`."""
    metadata = dict(sandbox.metadata or {})
    attachments = volume_domain.sandbox_attachments(sandbox)
    if attachments:
        metadata["volume_attachments"] = attachments
    return metadata


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """SnapshotInfo: STRICT, exactly these keys (the client builds it with Cls(**json))."""
    return {
        "id": snapshot.public_id,
        "sandbox_id": snapshot.sandbox_public_id,
        "size_bytes": int(snapshot.size_bytes),
        "created_at": iso(snapshot.created_at),
        "metadata": snapshot.metadata or {},
    }


# --- create -----------------------------------------------------------------------------


def template_exists(project: Project, name: str) -> bool:
    # Builtin templates are the runtime's builtin images; custom ones need a ready build.
    try:
        template_defaults.choose(project, name)
    except DomainError:
        return False
    return True


def create_sandbox(
    project: Project,
    *,
    actor: Actor,
    template: str | None = "base",
    envs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    cwd: str | None = None,
    timeout_ms: int | None = None,
    timeout_action: str | None = None,
    auto_resume: bool = False,
    network: dict[str, Any] | None = None,
    internet_access: bool = True,
    vcpus: int | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    snapshot: Snapshot | None = None,
    volumes: list[dict[str, Any]] | None = None,
    desktop: dict[str, Any] | None = None,
    warm_pool: WarmPool | None = None,
) -> tuple[Sandbox, str]:
    """Make a running sandbox (cold, or from `snapshot`); returns it and its raw traffic token.

    `volumes` is the request's list of mounts; a sandbox made from a snapshot without one
    mounts what the snapshot's sandbox mounted (the data stayed in the volumes).
    `desktop` (resolution, dpi, display) is for the desktop template, whose X screen is up
    before this returns (console/desktop/).
    `warm_pool`: made as that pool's inventory, hidden until checked out, with no
    timeout running (docs/warm-pools.md)."""
    from console.desktop import config as desktop_config

    screen = desktop_config.parse(template, desktop)
    if screen is not None:
        envs = {"DISPLAY": screen.display_name, **(envs or {})}
    fields = _validated_fields(
        project,
        template=template,
        envs=envs,
        metadata=metadata,
        cwd=cwd,
        timeout_ms=timeout_ms,
        timeout_action=timeout_action,
        auto_resume=auto_resume,
        network=network,
        internet_access=internet_access,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        snapshot=snapshot,
    )
    mounts = volume_domain.parse_mounts(project, volumes)
    if not volumes and snapshot is not None and snapshot.sandbox is not None:
        mounts = volume_domain.mounts_of(snapshot.sandbox)
    restore_from = _archive_of(snapshot) if snapshot else None
    if snapshot is not None:
        fields["source_snapshot_public_id"] = snapshot.public_id
        event = _Operation(
            Operation.RESUME_FROM_SNAPSHOT,
            actor,
            reason=actor.reason,
            snapshot_id=snapshot.public_id,
            source_sandbox_id=snapshot.sandbox_public_id,
        )
    else:
        event = _Operation(Operation.CREATE, actor, reason=actor.reason)
    event.metadata = {"timeout_action": fields["timeout_action"], "template": fields["template"]}
    start = fields.pop("_template_defaults", {})
    if warm_pool is not None:
        fields["warm_pool"] = warm_pool
        fields["warm_pool_generation"] = warm_pool.generation
        event.reason = "warm_pool_fill"
        event.metadata["warm_pool_id"] = warm_pool.public_id
    sandbox, token = _provision(
        project, fields, restore_from=restore_from, event=event, mounts=mounts
    )
    if screen is not None:
        _start_desktop(sandbox, screen)
    if snapshot is None and start:
        try:
            template_defaults.start(sandbox, start)
        except DomainError:
            destroy_sandbox(sandbox, actor=SYSTEM)
            raise
    return sandbox, token


def _start_desktop(sandbox: Sandbox, screen: Any) -> None:
    """The desktop comes up before create answers; a desktop that cannot start takes its
    sandbox with it (a desktop sandbox without a screen is no use to the caller)."""
    from console.desktop import session as desktop_session

    try:
        desktop_session.create_session(sandbox, screen)
    except Exception as exc:
        log.warning("desktop of %s did not start: %s", sandbox.public_id, exc)
        _quietly(lambda: destroy_sandbox(sandbox, actor=SYSTEM))
        if isinstance(exc, DomainError):
            raise
        raise DomainError("desktop_unavailable", f"The desktop did not start: {exc}") from exc


def validated_create_fields(project: Project, **given: Any) -> dict[str, Any]:
    """What create_sandbox makes of its arguments; a warm-pool checkout compares them
    with the pool's ready sandboxes (console/warm_pools/checkout.py)."""
    return _validated_fields(project, **given)


def _validated_fields(project: Project, **given: Any) -> dict[str, Any]:
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
    timeout_ms = _validated_timeout(given["timeout_ms"], default=300_000)
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
        "cwd": _validated_cwd(cwd),
        "timeout_ms": timeout_ms,
        "timeout_action": _validated_action(given["timeout_action"]),
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


def _validated_timeout(value: Any, *, default: int) -> int:
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


def _validated_action(value: Any) -> str:
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


def _validated_cwd(cwd: Any) -> str:
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


def _check_quota(project: Project, *, exclude_pk: int | None = None) -> None:
    limit = project.running_sandbox_limit
    active = Sandbox.objects.filter(project=project, status__in=ACTIVE)
    if exclude_pk is not None:
        active = active.exclude(pk=exclude_pk)
    if active.count() >= limit:
        # Warm pools' sandboxes run, so they count (docs/warm-pools.md): say so.
        pooled = active.filter(warm_pool__isnull=False).count()
        held = f" ({pooled} of them ready in warm pools)" if pooled else ""
        raise DomainError(
            "quota_exceeded",
            f"This project already runs {limit} sandboxes, its limit{held}",
            suggested_action="Kill or pause a sandbox, or ask an owner to raise the limit."
            + (" Check out from a warm pool (--warm-pool) or scale one down." if pooled else ""),
            details={"running_sandbox_limit": limit, "warm_pool_sandboxes": pooled},
        )


def _provision(
    project: Project,
    fields: dict[str, Any],
    *,
    restore_from: Path | None,
    event: _Operation,
    mounts: list[dict[str, Any]] | None = None,
) -> tuple[Sandbox, str]:
    """Insert the row (`creating`, owned by this instance and process), start it in the
    runtime, and record `event` as requested, then succeeded or failed."""
    token = new_secret(TRAFFIC)
    with transaction.atomic():
        # Lock the project row so concurrent creates count each other (PostgreSQL);
        # on SQLite the insert below holds the write lock until commit.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        _check_quota(project)
        # Lock the volumes too: a concurrent delete either sees this mount or wins first.
        mounts = mounts or []
        wanted = {m["volume"].pk for m in mounts}
        if len(Volume.objects.select_for_update().filter(pk__in=wanted)) < len(wanted):
            raise DomainError("not_found", "A volume to mount was deleted meanwhile")
        sandbox = Sandbox.objects.create(
            project=project,
            status=SandboxStatus.CREATING,
            traffic_token_prefix=token.prefix,
            traffic_token_digest=token.digest,
            created_by_key=event.actor.api_key,
            owner=this_instance(),
            create_process=this_process(),
            **fields,
        )
        volume_domain.attach(sandbox, mounts)
    target = {"target_sandbox_id": sandbox.public_id} if "source_sandbox_id" in event.ids else {}
    event.requested(sandbox, **target)
    try:
        with volume_domain.runtime_mounts(mounts) as bound:
            runtime_state = get_driver().create(create_spec(sandbox, restore_from), mounts=bound)
        # The client expects its `cwd` to exist from the start (relative paths use it).
        get_driver().files(sandbox.runtime_id).mkdir(sandbox.cwd)
    except Exception as exc:
        message = str(exc)[:500] or exc.__class__.__name__
        Sandbox.objects.filter(pk=sandbox.pk).update(
            status=SandboxStatus.ERROR, error_message=message, create_process=""
        )
        error = DomainError("runtime_error", f"Could not start the sandbox: {message}")
        if isinstance(exc, DomainError):
            error = exc  # a volume's subpath refused
        elif isinstance(exc, RuntimeError_) and exc.code in (
            "runtime_unavailable",
            "invalid_request",
        ):
            error = _domain_error(exc)  # the machine cannot isolate, or a bad volume
        event.failed(sandbox, error, **target)
        _quietly(lambda: get_driver().destroy(sandbox.runtime_id))
        raise error from exc
    now = timezone.now()
    Sandbox.objects.filter(pk=sandbox.pk, status=SandboxStatus.CREATING).update(
        status=SandboxStatus.RUNNING,
        runtime_state=runtime_state or {},
        create_process="",
        started_at=now,
        # A warm pool's sandbox has no timeout until a create checks it out.
        timeout_at=None
        if sandbox.warm_pool_id
        else now + timedelta(milliseconds=sandbox.timeout_ms),
    )
    sandbox.refresh_from_db()
    event.succeeded(sandbox, **target)
    return sandbox, token.raw


def create_spec(sandbox: Sandbox, restore_from: Path | None) -> CreateSpec:
    """What the runtime needs to make (or remake) the sandbox of this row."""
    on_template = {"template": sandbox.template} | template_defaults.spec_fields(
        sandbox.template_build
    )
    return CreateSpec(
        sandbox_id=sandbox.public_id,
        envs=sandbox.envs,
        memory_mb=sandbox.memory_mb,
        vcpus=sandbox.vcpus,
        disk_mb=sandbox.disk_mb,
        egress=netpolicy.parse(sandbox.internet_access, sandbox.network),
        hostname=sandbox.public_id.replace("_", "-").lower(),
        cwd=sandbox.cwd or WORKSPACE,
        restore_from=restore_from,
        **on_template,
    )


def reissue_traffic_token(sandbox: Sandbox) -> str:
    """A new traffic token (the old one stops working); used when a create is replayed,
    because raw tokens are never stored."""
    token = new_secret(TRAFFIC)
    Sandbox.objects.filter(pk=sandbox.pk).update(
        traffic_token_prefix=token.prefix, traffic_token_digest=token.digest
    )
    return token.raw


# --- transitions ------------------------------------------------------------------------


def _claim(sandbox: Sandbox, statuses: tuple[str, ...], transition: str) -> bool:
    """Take the sandbox for one transition; False when another state change holds it."""
    return bool(
        Sandbox.objects.filter(pk=sandbox.pk, status__in=statuses, transition="").update(
            transition=transition, transition_started_at=timezone.now()
        )
    )


def _wait_idle(sandbox: Sandbox, seconds: float = 60) -> None:
    """Wait for another transition of this sandbox to finish (or be found abandoned)."""
    deadline = time.monotonic() + seconds
    while True:
        sandbox.refresh_from_db()
        if not sandbox.transition:
            return
        started = sandbox.transition_started_at
        if started is None or timezone.now() - started > STALE_TRANSITION:
            Sandbox.objects.filter(pk=sandbox.pk, transition=sandbox.transition).update(
                transition=""
            )
            continue
        if time.monotonic() > deadline:
            raise DomainError(
                "sandbox_not_ready",
                f"Sandbox {sandbox.public_id} is busy ({sandbox.transition})",
                retryable=True,
                suggested_action="Retry in a moment.",
            )
        time.sleep(0.1)


def _release(sandbox: Sandbox, transition: str) -> None:
    Sandbox.objects.filter(pk=sandbox.pk, transition=transition).update(transition="")


def destroy_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
    reason: str = REASON_MANUAL,
    metadata: dict[str, Any] | None = None,
) -> Sandbox:
    """Kill every process and free everything, for good: a paused sandbox's hibernate
    snapshot goes with it. Destroying a destroyed sandbox does nothing."""
    now = timezone.now()
    changed = Sandbox.objects.filter(
        pk=sandbox.pk, status__in=(*ACTIVE, SandboxStatus.PAUSED, SandboxStatus.ERROR)
    ).update(status=SandboxStatus.DESTROYED, transition="", destroyed_at=now, timeout_at=None)
    sandbox.refresh_from_db()
    if not changed:
        return sandbox
    event = _Operation(Operation.DESTROY, actor, reason=reason, metadata=metadata)
    event.requested(sandbox)
    try:
        get_driver().destroy(sandbox.runtime_id)
    except Exception as exc:
        # The row is terminal already; start-up reconciliation removes what is left.
        log.warning("driver destroy of %s failed: %s", sandbox.public_id, exc)
    _drop_hibernate_snapshot(sandbox)
    event.succeeded(sandbox)
    return sandbox


def _pause_snapshot(sandbox: Sandbox) -> Snapshot | None:
    """The hibernate snapshot a paused sandbox resumes from, if it has one."""
    if sandbox.pause_snapshot_id is None:
        return None
    return Snapshot.objects.filter(pk=sandbox.pause_snapshot_id).first()


def _drop_hibernate_snapshot(sandbox: Sandbox) -> None:
    """A killed paused sandbox cannot be resumed: its pause archive is removed."""
    snapshot = _pause_snapshot(sandbox)
    if snapshot is None or snapshot.kind != SnapshotKind.HIBERNATE:
        return
    if snapshot.archive_path:
        Path(snapshot.archive_path).unlink(missing_ok=True)
    snapshot.delete()


def pause_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Snapshot:
    """Hibernate: stop every process, archive the workspace, keep the archive as the
    pause snapshot. Pausing a paused sandbox returns its pause snapshot."""
    while not _claim(sandbox, (SandboxStatus.RUNNING,), "pausing"):
        sandbox.refresh_from_db()
        if sandbox.transition:
            _wait_idle(sandbox)
            continue
        if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
            return Snapshot.objects.get(pk=sandbox.pause_snapshot_id)
        require_running(sandbox)
    event = _Operation(Operation.HIBERNATE, actor, reason=reason or actor.reason, metadata=metadata)
    event.requested(sandbox)
    driver = get_driver()
    snapshot = Snapshot(
        project=sandbox.project,
        sandbox=sandbox,
        sandbox_public_id=sandbox.public_id,
        kind=SnapshotKind.HIBERNATE,
        metadata=sandbox.metadata or {},
    )
    try:
        _driver(lambda: driver.pause(sandbox.runtime_id))
        _archive(sandbox, snapshot)
        changed = Sandbox.objects.filter(
            pk=sandbox.pk, status=SandboxStatus.RUNNING, transition="pausing"
        ).update(
            status=SandboxStatus.PAUSED,
            transition="",
            pause_snapshot=snapshot,
            paused_at=timezone.now(),
            timeout_at=None,
        )
        if not changed:
            raise DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
    except DomainError as error:
        _release(sandbox, "pausing")
        sandbox.refresh_from_db()
        if sandbox.status == SandboxStatus.RUNNING:
            _quietly(lambda: driver.resume(sandbox.runtime_id))
        event.failed(sandbox, error)
        raise
    sandbox.refresh_from_db()
    event.succeeded(sandbox, snapshot_id=snapshot.public_id)
    _Operation(
        Operation.SNAPSHOT_CREATED,
        actor,
        reason=event.reason,
        metadata={**event.metadata, "created_via": "hibernate"},
    ).succeeded(sandbox, snapshot_id=snapshot.public_id)
    return snapshot


def resume_sandbox(
    project: Project,
    ref: str,
    *,
    actor: Actor,
) -> Sandbox:
    """Resume by paused sandbox id or by snapshot id; the answer is a running sandbox with
    a new id, as the client expects (docs/api.md, "Pause, hibernate and resume").

    A paused sandbox hands its runtime over, processes and all, and its old id is gone.
    Any other snapshot (a manual one, or a hibernate snapshot whose sandbox runs again)
    is restored into a fresh sandbox. Resuming a running sandbox by its id returns it."""
    snapshot = (
        Snapshot.objects.filter(project=project, public_id=ref).select_related("sandbox").first()
    )
    if snapshot is None:
        sandbox = (
            Sandbox.objects.filter(project=project, public_id=ref)
            .exclude(status=SandboxStatus.DESTROYED)
            .first()
        )
        if sandbox is None:
            # A killed paused sandbox took its hibernate snapshot with it.
            raise DomainError(
                "sandbox_not_found",
                f"No paused sandbox or snapshot {ref} to resume",
                suggested_action="List what can be resumed: nullspace sandbox list --state paused",
            )
        return _hand_over(sandbox, actor)
    source = snapshot.sandbox
    if (
        snapshot.kind == SnapshotKind.HIBERNATE
        and source is not None
        and source.status in (SandboxStatus.PAUSED, SandboxStatus.CREATING)
        and source.pause_snapshot_id == snapshot.pk
    ):
        return _hand_over(source, actor)
    sandbox, _token = create_sandbox(
        project,
        actor=actor,
        template=None,
        envs=None,
        metadata=dict(source.metadata) if source else dict(snapshot.metadata),
        timeout_ms=source.timeout_ms if source else None,
        timeout_action=source.timeout_action if source else None,
        auto_resume=source.auto_resume if source else False,
        network=dict(source.network) if source else None,
        internet_access=source.internet_access if source else True,
        snapshot=snapshot,
    )
    return sandbox


# Settings a resumed sandbox carries over from the paused one it replaces.
_CARRIED_OVER = (
    "project",
    "template",
    "vcpus",
    "memory_mb",
    "disk_mb",
    "envs",
    "metadata",
    "cwd",
    "network",
    "internet_access",
    "timeout_ms",
    "timeout_action",
    "auto_resume",
    "traffic_token_prefix",
    "traffic_token_digest",
    "runtime_state",
    "forked_from_public_id",
)


def _hand_over(paused: Sandbox, actor: Actor) -> Sandbox:
    """Wake a paused sandbox's runtime under a new sandbox id; the old id is gone."""
    while not _claim(paused, (SandboxStatus.PAUSED,), "resuming"):
        paused.refresh_from_db()
        if paused.transition:
            _wait_idle(paused)
            continue
        if paused.status == SandboxStatus.RUNNING:
            return paused  # running already (woken in place by preview traffic)
        require_running(paused)
    snapshot = _pause_snapshot(paused)
    snapshot_id = snapshot.public_id if snapshot else ""
    event = _Operation(
        Operation.RESUME_FROM_SNAPSHOT,
        actor,
        reason=actor.reason,
        metadata={"timeout_action": paused.timeout_action},
        snapshot_id=snapshot_id,
        source_sandbox_id=paused.public_id,
    )
    event.requested(paused)
    successor: Sandbox | None = None
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=paused.project_id).first()
            _check_quota(paused.project)
            successor = Sandbox.objects.create(
                **{name: getattr(paused, name) for name in _CARRIED_OVER},
                status=SandboxStatus.CREATING,
                runtime_name=paused.runtime_id,
                owner=paused.owner or this_instance(),
                create_process=this_process(),
                source_snapshot_public_id=snapshot_id,
                created_by_key=actor.api_key,
            )
            # The successor mounts what the paused sandbox mounted (the runtime kept them).
            volume_domain.attach(successor, volume_domain.mounts_of(paused))
        runtime_name = _wake(paused, snapshot, restore_as=successor.public_id)
        now = timezone.now()
        gone = Sandbox.objects.filter(
            pk=paused.pk, status=SandboxStatus.PAUSED, transition="resuming"
        ).update(status=SandboxStatus.DESTROYED, transition="", destroyed_at=now)
        if not gone:
            raise DomainError("sandbox_not_found", f"Sandbox {paused.public_id} was destroyed")
        Sandbox.objects.filter(pk=successor.pk).update(
            status=SandboxStatus.RUNNING,
            runtime_name="" if runtime_name == successor.public_id else runtime_name,
            create_process="",
            started_at=now,
            timeout_at=now + timedelta(milliseconds=paused.timeout_ms),
        )
        # Code interpreter contexts go with the runtime: their kernels run on in it
        # (docs/code-interpreter.md).
        CodeContext.objects.filter(sandbox=paused).update(sandbox=successor)
    except (DomainError, RuntimeError_) as exc:
        _release(paused, "resuming")
        if successor is not None:
            successor.delete()  # it never ran; the paused sandbox stays as it was
        error = exc if isinstance(exc, DomainError) else _domain_error(exc)
        event.failed(paused, error)
        raise error from exc
    successor.refresh_from_db()
    event.succeeded(successor, target_sandbox_id=successor.public_id)
    return successor


def _wake(sandbox: Sandbox, snapshot: Snapshot | None, *, restore_as: str) -> str:
    """Thaw a paused sandbox's processes; when the runtime lost them (a restart), restore
    the pause archive into a runtime named `restore_as`. Returns the runtime's name."""
    driver = get_driver()
    try:
        driver.resume(sandbox.runtime_id)
        return sandbox.runtime_id
    except RuntimeError_ as exc:
        if snapshot is None or driver.exists(sandbox.runtime_id):
            raise
        log.info("runtime lost paused %s (%s); restoring its archive", sandbox.public_id, exc)
    with volume_domain.runtime_mounts(volume_domain.mounts_of(sandbox)) as bound:
        driver.create(
            dataclasses.replace(create_spec(sandbox, _archive_of(snapshot)), sandbox_id=restore_as),
            mounts=bound,
        )
    return restore_as


def resume_existing(sandbox: Sandbox, *, actor: Actor, reason: str | None = None) -> Sandbox:
    """Continue a paused sandbox's processes under its own id: the gateway's wake on
    traffic (a preview host names the sandbox id) and the console's resume button (its
    page is the sandbox's). A running one is returned as it is."""
    while not _claim(sandbox, (SandboxStatus.PAUSED,), "resuming"):
        sandbox.refresh_from_db()
        if sandbox.transition:
            _wait_idle(sandbox)
            continue
        if sandbox.status == SandboxStatus.RUNNING:
            return sandbox
        require_running(sandbox)
    snapshot = _pause_snapshot(sandbox)
    event = _Operation(
        Operation.RESUME_FROM_SNAPSHOT,
        actor,
        reason=reason or actor.reason,
        snapshot_id=snapshot.public_id if snapshot else "",
        source_sandbox_id=sandbox.public_id,
        target_sandbox_id=sandbox.public_id,
    )
    event.requested(sandbox)
    try:
        _check_quota(sandbox.project, exclude_pk=sandbox.pk)
        runtime_name = _wake(sandbox, snapshot, restore_as=sandbox.runtime_id)
        now = timezone.now()
        changed = Sandbox.objects.filter(
            pk=sandbox.pk, status=SandboxStatus.PAUSED, transition="resuming"
        ).update(
            status=SandboxStatus.RUNNING,
            transition="",
            pause_snapshot=None,
            paused_at=None,
            runtime_name="" if runtime_name == sandbox.public_id else runtime_name,
            timeout_at=now + timedelta(milliseconds=sandbox.timeout_ms),
        )
        if not changed:
            raise DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
    except (DomainError, RuntimeError_) as exc:
        _release(sandbox, "resuming")
        error = exc if isinstance(exc, DomainError) else _domain_error(exc)
        event.failed(sandbox, error)
        raise error from exc
    sandbox.refresh_from_db()
    event.succeeded(sandbox)
    return sandbox


def ensure_running(sandbox: Sandbox, wait_seconds: float = 30) -> Sandbox:
    """For the gateway's wake-on-traffic: a running sandbox, resuming a paused one when
    it was created with auto_resume. Raises sandbox_not_ready / sandbox_not_found."""
    _wait_idle(sandbox, wait_seconds)
    if sandbox.status == SandboxStatus.PAUSED and sandbox.auto_resume:
        return resume_existing(sandbox, actor=SYSTEM, reason="traffic")
    require_running(sandbox)
    return sandbox


def fork_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
) -> tuple[Sandbox, str]:
    """A new running sandbox with a copy of this one's workspace and settings."""
    sandbox.refresh_from_db()
    if sandbox.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED):
        require_running(sandbox)
    fields = {
        "template": sandbox.template,
        "envs": dict(sandbox.envs),
        "metadata": dict(sandbox.metadata),
        "cwd": sandbox.cwd,
        "timeout_ms": sandbox.timeout_ms,
        "timeout_action": sandbox.timeout_action,
        "auto_resume": sandbox.auto_resume,
        "network": dict(sandbox.network),
        "internet_access": sandbox.internet_access,
        "vcpus": sandbox.vcpus,
        "memory_mb": sandbox.memory_mb,
        "disk_mb": sandbox.disk_mb,
        "forked_from_public_id": sandbox.public_id,
    }
    if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
        archive = _archive_of(Snapshot.objects.get(pk=sandbox.pause_snapshot_id))
        temporary = None
    else:
        temporary = snapshot_root() / f"fork-{sandbox.public_id}-{time.time_ns()}.tar"
        _driver(lambda: get_driver().snapshot(sandbox.runtime_id, temporary))
        archive = temporary
    event = _Operation(
        Operation.FORK,
        actor,
        reason=actor.reason,
        metadata={"timeout_action": sandbox.timeout_action},
        source_sandbox_id=sandbox.public_id,
    )
    try:
        child, token = _provision(
            sandbox.project,
            fields,
            restore_from=archive,
            event=event,
            mounts=volume_domain.mounts_of(sandbox),
        )
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return child, token


def snapshot_sandbox(
    sandbox: Sandbox,
    *,
    actor: Actor,
) -> Snapshot:
    """Archive the workspace as a reusable snapshot (create-from-snapshot restores it)."""
    sandbox.refresh_from_db()
    if sandbox.status != SandboxStatus.PAUSED:
        require_running(sandbox)
    event = _Operation(
        Operation.SNAPSHOT_CREATED, actor, reason=actor.reason, metadata={"created_via": "api"}
    )
    event.requested(sandbox)
    snapshot = Snapshot(
        project=sandbox.project,
        sandbox=sandbox,
        sandbox_public_id=sandbox.public_id,
        kind=SnapshotKind.MANUAL,
        metadata=dict(sandbox.metadata or {}),
    )
    try:
        _write_snapshot(sandbox, snapshot)
    except DomainError as error:
        event.failed(sandbox, error)
        raise
    event.succeeded(sandbox, snapshot_id=snapshot.public_id)
    return snapshot


def _write_snapshot(sandbox: Sandbox, snapshot: Snapshot) -> None:
    if sandbox.status == SandboxStatus.PAUSED and sandbox.pause_snapshot_id:
        # A paused workspace is the pause archive: copy it rather than touch the runtime.
        import shutil

        source = _archive_of(Snapshot.objects.get(pk=sandbox.pause_snapshot_id))
        target = snapshot_root() / f"{snapshot.public_id}.tar"
        shutil.copyfile(source, target)
        snapshot.archive_path = str(target)
        snapshot.size_bytes = target.stat().st_size
        snapshot.save()
    else:
        _archive(sandbox, snapshot)


def delete_snapshot(snapshot: Snapshot) -> None:
    if Sandbox.objects.filter(pause_snapshot=snapshot, status=SandboxStatus.PAUSED).exists():
        raise DomainError(
            "snapshot_in_use",
            f"Snapshot {snapshot.public_id} holds a paused sandbox's state",
            suggested_action="Resume or kill the paused sandbox first.",
        )
    if snapshot.archive_path:
        Path(snapshot.archive_path).unlink(missing_ok=True)
    snapshot.delete()


def set_timeout(
    sandbox: Sandbox,
    timeout_ms: Any,
    timeout_action: str | None = None,
    *,
    actor: Actor,
) -> Sandbox:
    """Counted from now; the worker acts on `timeout_at`."""
    sandbox.refresh_from_db()
    if sandbox.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED, SandboxStatus.CREATING):
        require_running(sandbox)
    timeout_ms = _validated_timeout(timeout_ms, default=sandbox.timeout_ms)
    updates: dict[str, Any] = {"timeout_ms": timeout_ms}
    if timeout_action is not None:
        updates["timeout_action"] = _validated_action(timeout_action)
    event = _Operation(
        Operation.TIMEOUT_UPDATED,
        actor,
        reason=actor.reason,
        metadata={
            "timeout_ms": timeout_ms,
            "timeout_action": updates.get("timeout_action", sandbox.timeout_action),
        },
    )
    event.requested(sandbox)
    if sandbox.status != SandboxStatus.PAUSED:
        updates["timeout_at"] = timezone.now() + timedelta(milliseconds=timeout_ms)
    changed = Sandbox.objects.filter(
        pk=sandbox.pk, status__in=(*ACTIVE, SandboxStatus.PAUSED)
    ).update(**updates)
    if not changed:
        error = DomainError("sandbox_not_found", f"Sandbox {sandbox.public_id} was destroyed")
        event.failed(sandbox, error)
        raise error
    sandbox.refresh_from_db()
    event.succeeded(sandbox)
    return sandbox


# --- processes --------------------------------------------------------------------------


def exec_request(body: dict[str, Any], *, background: bool = False) -> ExecRequest:
    """An ExecRequest from the contract's exec body (HTTP or exec_start frame)."""
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise DomainError("invalid_request", "command must be a non-empty string")
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise DomainError("invalid_request", "args must be a list of strings")
    envs = validated_envs(body.get("envs") or {})
    cwd = body.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise DomainError("invalid_request", "cwd must be a string")
    timeout = body.get("timeout_secs", 30)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise DomainError("invalid_request", "timeout_secs must be a non-negative number")
    return ExecRequest(
        command=command,
        args=list(args),
        shell=bool(body.get("shell")),
        cwd=_validated_cwd(cwd) if cwd else None,
        envs=envs,
        # A background process lives until killed; timeout_secs bounds waiting for it.
        timeout_secs=None if background or not timeout else float(timeout),
    )


def start_process(sandbox: Sandbox, request: ExecRequest) -> int:
    require_running(sandbox)
    driver = get_driver()
    return _driver(
        lambda: driver.start_process(
            sandbox.runtime_id, request, default_cwd=sandbox.cwd, envs=dict(sandbox.envs)
        )
    )


def run_command(sandbox: Sandbox, request: ExecRequest) -> ExecResult:
    """Run to completion; past `timeout_secs` the process is killed and exec_timeout raised."""
    pid = start_process(sandbox, request)
    driver = get_driver()
    exit_code = _driver(lambda: driver.wait_process(sandbox.runtime_id, pid, request.timeout_secs))
    if exit_code is None:
        _quietly(lambda: driver.kill_process(sandbox.runtime_id, pid))
        _quietly(lambda: driver.wait_process(sandbox.runtime_id, pid, 5))
        raise DomainError(
            "exec_timeout",
            f"Command ran past its timeout of {request.timeout_secs:g} s and was killed",
            suggested_action="Raise --timeout, or run it with --background.",
            details={"pid": pid, "timeout_secs": request.timeout_secs},
        )
    logs = read_logs(sandbox, pid)
    return ExecResult(
        exit_code=exit_code,
        stdout=logs.stdout,
        stderr=logs.stderr,
        pid=pid,
        truncated=logs.truncated,
    )


def read_logs(sandbox: Sandbox, pid: int) -> ProcessLogs:
    """A process's output, at most EXEC_RESPONSE_MAX_BYTES of each stream."""
    limit = settings.EXEC_RESPONSE_MAX_BYTES
    return _driver(lambda: get_driver().process_logs(sandbox.runtime_id, pid, limit=limit))


def truncation_fields(truncated: bool) -> dict[str, Any]:
    """What an answer adds when output was cut: the flag and the caps that cut it."""
    if not truncated:
        return {}
    return {
        "truncated": True,
        "output_limit_bytes": settings.EXEC_OUTPUT_MAX_BYTES,
        "response_limit_bytes": settings.EXEC_RESPONSE_MAX_BYTES,
    }


def metrics_to_dict(sandbox: Sandbox) -> dict[str, Any]:
    """One SandboxMetrics (STRICT keys; the optional network counters only when known)."""
    return sample_to_dict(_driver(lambda: get_driver().metrics(sandbox.runtime_id)))


def sample_to_dict(sample: Any) -> dict[str, Any]:
    """A driver's metrics sample as SandboxMetrics (network counters only when known)."""
    return {
        k: v for k, v in asdict(sample).items() if v is not None or not k.startswith("network_")
    }


def process_to_dict(process: Any) -> dict[str, Any]:
    """ProcessInfo, as the process list and the monitor stream send it."""
    return {"pid": process.pid, "command": process.command, "running": process.running}


# --- helpers ----------------------------------------------------------------------------


def snapshot_root() -> Path:
    root = Path(settings.DATA_DIR) / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _archive(sandbox: Sandbox, snapshot: Snapshot) -> None:
    target = snapshot_root() / f"{snapshot.public_id}.tar"
    size = _driver(lambda: get_driver().snapshot(sandbox.runtime_id, target))
    snapshot.archive_path = str(target)
    snapshot.size_bytes = int(size)
    snapshot.save()


def _archive_of(snapshot: Snapshot) -> Path:
    path = Path(snapshot.archive_path) if snapshot.archive_path else None
    if path is None or not path.exists():
        raise DomainError(
            "snapshot_not_found",
            f"Snapshot {snapshot.public_id} has no archive left to restore",
        )
    return path


def _driver(call: Callable[[], T]) -> T:
    """Run a driver call, turning runtime errors into domain errors (same stable code)."""
    try:
        return call()
    except RuntimeError_ as exc:
        raise _domain_error(exc) from exc


def _domain_error(exc: RuntimeError_) -> DomainError:
    return DomainError(exc.code, str(exc))


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:
        log.warning("cleanup step failed: %s", exc)


class _Operation:
    """One operation's lifecycle events: `requested`, then `succeeded` or `failed`, with
    the same reason and metadata (docs/api.md, "Lifecycle events")."""

    def __init__(
        self,
        operation: str,
        actor: Actor,
        *,
        reason: str = "",
        metadata: dict[str, Any] | None = None,
        **ids: str,
    ) -> None:
        self.operation = operation
        self.actor = actor
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.ids = ids

    def requested(self, sandbox: Sandbox, **ids: str) -> None:
        self._record(sandbox, EventStatus.REQUESTED, None, ids)

    def succeeded(self, sandbox: Sandbox, **ids: str) -> None:
        self._record(sandbox, EventStatus.SUCCEEDED, None, ids)

    def failed(self, sandbox: Sandbox, error: DomainError, **ids: str) -> None:
        self._record(sandbox, EventStatus.FAILED, error, ids)

    def _record(
        self, sandbox: Sandbox, status: str, error: DomainError | None, ids: dict[str, str]
    ) -> None:
        meta = dict(self.metadata)
        if self.actor.api_key is not None:
            meta["api_key_id"] = self.actor.api_key.public_id
        fields = {"sandbox_id": sandbox.public_id, **self.ids, **ids}
        if error is not None:
            fields.update(error_code=error.code, error_message=error.message)
        record_event(
            sandbox.project,
            self.operation,
            status=status,
            actor_kind=self.actor.kind,
            user_id=str(self.actor.user.pk) if self.actor.user is not None else "",
            reason=self.reason,
            metadata=meta,
            **fields,
        )


def metadata_filter(raw: str | None) -> dict[str, Any]:
    """A `metadata` query parameter (JSON object) validated for key lookups."""
    import json

    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise DomainError("invalid_request", "metadata must be a JSON-encoded object") from None
    if not isinstance(value, dict):
        raise DomainError("invalid_request", "metadata must be a JSON-encoded object")
    for key in value:
        if not _METADATA_KEY.match(key) or "__" in key:
            raise DomainError("invalid_request", f"metadata filter key {key!r} is not supported")
    return value
