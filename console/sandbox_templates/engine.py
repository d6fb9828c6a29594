"""The native build engine (docs/templates.md): each file-changing step runs in a build
sandbox of its own, on the layers made so far over the builtin image, and what it
changed (the sandbox's writable layer) becomes the next layer.

A layer's id is its cache key: a digest of the parent's key and everything that shapes
the step (action, arguments, user, working directory, build env, the content digests of
copied files; never secret values). An existing layer of that key is a cache hit and
no sandbox runs. Metadata steps (user, env) change only what later steps run with.

Cancellation: a watcher thread reads the build's row twice a second; a requested cancel
(or the build's time limit) kills the running step's process and the build ends
`cancelled`. Secrets reach a step as environment variables and files under
/run/secrets/, removed before the layer is kept, and are masked in every log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from console.models import Team, TemplateBuild, TemplateTag
from console.runtime import get_driver
from console.runtime.base import CreateSpec, Driver, EgressPolicy, ExecRequest, RuntimeError_
from console.sandbox_templates import blobs, followers, sealing, shapes
from console.sandbox_templates import plan as plans
from console.sandbox_templates.buildlog import BuildLog
from console.sandbox_templates.models import BUILD_TERMINAL, BuildStatus

log = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.5
SECRETS_DIR = "/run/secrets"
HEREDOC_END = "__NULLSPACE_HEREDOC_END__"


class StepFailed(Exception):
    def __init__(self, code: str, message: str, step_index: int | None, phase: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.step_index = step_index
        self.phase = phase


class Cancelled(Exception):
    pass


@dataclass
class State:
    """What the next step runs with, and what the template's sandboxes get by default."""

    user: str = "root"
    workdir: str = "/"
    envs: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


def key_of(parent: str, item: plans.Step, state: State, extra: Any = None) -> str:
    material = json.dumps(
        [parent, item.action, item.args, state.user, state.workdir, state.envs, extra],
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def command_of(item: plans.Step, state: State) -> tuple[str, str]:
    """(shell command, user) of a file-changing step other than copy."""
    a, q = item.args, shlex.quote
    if item.action == "run":
        command = a["command"]
        if "heredoc" in a:
            body = a["heredoc"] if a["heredoc"].endswith("\n") else a["heredoc"] + "\n"
            command = f"{command} <<'{HEREDOC_END}'\n{body}{HEREDOC_END}\n"
        return command, a.get("user") or state.user
    if item.action == "apt_install":
        packages = " ".join(q(p) for p in a["packages"])
        return (
            "export DEBIAN_FRONTEND=noninteractive && apt-get update -q && "
            f"apt-get install -y -q --no-install-recommends {packages} && "
            "apt-get clean && rm -rf /var/lib/apt/lists/*",
            "root",
        )
    if item.action == "pip_install":
        packages = " ".join(q(p) for p in a["packages"])
        if a.get("g", True):
            return f"python3 -m pip install --no-cache-dir {packages}", "root"
        return f"python3 -m pip install --no-cache-dir --user {packages}", state.user
    if item.action == "npm_install":
        packages = " ".join(q(p) for p in a["packages"])
        check = (
            "command -v npm >/dev/null || { echo 'npm is not installed in this template: "
            "add an apt_install npm step first' >&2; exit 127; }; "
        )
        flag = " -g" if a.get("g") else ""
        return f"{check}npm install{flag} {packages}", "root" if a.get("g") else state.user
    if item.action == "git_clone":
        flags = ""
        if a.get("branch"):
            flags += f" --branch {q(a['branch'])}"
        if a.get("depth"):
            flags += f" --depth {int(a['depth'])}"
        return f"git clone{flags} -- {q(a['url'])} {q(a['path'])}", state.user
    if item.action == "make_dir":
        command = f"mkdir -p -- {q(a['path'])}"
        if a.get("mode"):
            command += f" && chmod {q(a['mode'])} -- {q(a['path'])}"
        return command, state.user
    if item.action == "make_symlink":
        return f"ln -sfn -- {q(a['target'])} {q(a['path'])}", state.user
    if item.action == "rename":
        return f"mv {'-f' if a.get('force') else '-n'} -- {q(a['src'])} {q(a['dst'])}", state.user
    if item.action == "remove":
        flags = ("r" if a.get("recursive") else "") + ("f" if a.get("force") else "")
        return f"rm {'-' + flags if flags else ''} -- {q(a['path'])}", state.user
    if item.action == "workdir":
        return f"mkdir -p -- {q(a['path'])}", "root"
    raise RuntimeError_(f"no command for step {item.action}")


class Builder:
    def __init__(self, build: TemplateBuild, plan: plans.Plan, secrets: list[dict[str, str]]):
        self.build = build
        self.plan = plan
        self.secrets = secrets
        self.log = BuildLog(build, [s["value"] for s in secrets])
        self.driver: Driver = get_driver()
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self.running: tuple[str, int] | None = None
        self.counters = {name: 0 for name in shapes.CACHE_COUNTERS}
        self.deadline = time.monotonic() + settings.TEMPLATE_BUILD_TIMEOUT_SECONDS

    # --- the watcher ------------------------------------------------------------------------
    def _watch(self, done: threading.Event) -> None:
        try:
            while not done.wait(CANCEL_POLL_SECONDS):
                row = (
                    TemplateBuild.objects.filter(pk=self.build.pk)
                    .values("cancel_requested_at", "cancellation_reason")
                    .first()
                )
                over_time = time.monotonic() > self.deadline
                if row is None or row["cancel_requested_at"] is not None or over_time:
                    self.cancel_reason = (
                        f"the build ran past its limit of {settings.TEMPLATE_BUILD_TIMEOUT_SECONDS} s"
                        if over_time
                        else str((row or {"r": ""}).get("cancellation_reason") or "")
                        or "cancelled by request"
                    )
                    self.cancel.set()
                    if self.running is not None:
                        sandbox_id, pid = self.running
                        try:
                            self.driver.kill_process(sandbox_id, pid)
                        except Exception:
                            log.debug("killing the step of %s failed", self.build.public_id)
                    return
        finally:
            close_old_connections()

    # --- the build ----------------------------------------------------------------------------
    def run(self) -> None:
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(done,), daemon=True)
        watcher.start()
        try:
            self._run()
        except Cancelled:
            self._finish_cancelled()
        except StepFailed as failure:
            self._finish_failed(failure)
        except Exception as exc:
            log.exception("template build %s failed", self.build.public_id)
            self._finish_failed(
                StepFailed("build_failed", f"the build failed: {exc}", None, "finalize")
            )
        finally:
            done.set()
            watcher.join(timeout=5)

    def _check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _run(self) -> None:
        plan, build = self.plan, self.build
        steps = plan.steps
        total = len(steps)
        base = plan.base_ref or "the base image"
        self.log.add(
            "start",
            f"Building {build.template.name} from {base}: {total} step(s)",
            phase="prepare",
        )
        for warning in plan.warnings:
            self.log.add("warning", warning, level="warn", phase="prepare")
        state = State()
        layers: list[str] = []
        if plan.parent is not None:
            parent = plan.parent
            layers = list(parent.layers or [])
            for reused in layers:
                self.driver.touch_layer(reused)
            key = parent.cache_key or hashlib.sha256(parent.public_id.encode()).hexdigest()[:32]
            defaults = dict(parent.runtime_defaults or {})
            state = State(
                user=defaults.get("user") or "root",
                workdir=defaults.get("workdir") or "/",
                envs=dict(defaults.get("envs") or {}),
                defaults=defaults,
            )
        else:
            self.log.add(
                "message",
                f"Preparing the builtin image {plan.image} (Debian {plan.suite}); "
                "the first use of a suite builds it once",
                phase="prepare",
            )
            image = self._image()
            key = hashlib.sha256(f"root\0{image}\0{plan.suite}".encode()).hexdigest()[:32]
        state.envs.update(plan.build_envs)
        bypass = plan.skip_cache
        for index, item in enumerate(steps):
            self._check()
            phase = f"step {index + 1}/{total}: {item.action}"
            if item.action == "skip_cache":
                bypass = True
                self.log.add("message", "Later steps skip the cache", phase=phase, step_index=index)
                continue
            # The team is part of every key: a team never runs on a layer another team's
            # build made (a step's output can depend on what the network served then).
            extra: list[Any] = [self.build.template.team_id]
            if item.action == "copy":
                extra.append(self._copy_digest(item))
            key = key_of(key, item, state, extra)
            if item.action in ("user", "env"):
                self._apply_metadata(item, state)
                self.log.add(
                    "message",
                    f"{item.label()}: {self._describe(item)}",
                    phase=phase,
                    step_index=index,
                )
                continue
            self.log.add(
                "message", f"{item.label()}: {self._describe(item)}", phase=phase, step_index=index
            )
            if not bypass and self.driver.has_layer(key):
                self.driver.touch_layer(key)  # reused: garbage collection spares it
                self.counters["layer_hits"] += 1
                self._cache_entry("hit", key, phase, index)
                layers.append(key)
                if item.action == "workdir":
                    state.workdir = item.args["path"]
                continue
            if bypass:
                self.counters["layer_bypasses"] += 1
                self._cache_entry("bypass", key, phase, index, reason="whole_build_skip_cache")
            else:
                self.counters["layer_misses"] += 1
                self._cache_entry("miss", key, phase, index)
            self._run_step(index, item, state, layers, key, phase)
            layers.append(key)
            self.counters["layer_stores"] += 1
            self._cache_entry("stored", key, phase, index)
            if item.action == "workdir":
                state.workdir = item.args["path"]
        self._check()
        self._finish_ready(state, layers, key)

    def _image(self) -> str:
        image = getattr(self.driver, "image", None)
        if image is None:
            raise StepFailed(
                "runtime_unavailable",
                "custom templates need isolated sandboxes (RUNTIME_ISOLATION=full)",
                None,
                "prepare",
            )
        try:
            return str(image(self.plan.image, self.plan.suite).name)
        except RuntimeError_ as exc:
            raise StepFailed("base_image_unavailable", str(exc), None, "prepare") from None

    def _describe(self, item: plans.Step) -> str:
        args = item.args
        if item.action == "run":
            return str(args["command"]) + (" <<heredoc" if "heredoc" in args else "")
        if item.action in ("apt_install", "pip_install", "npm_install"):
            return " ".join(args["packages"])
        if item.action == "env":
            return " ".join(f"{k}=…" for k in args["envs"])
        return json.dumps(args, sort_keys=True)[:500]

    def _apply_metadata(self, item: plans.Step, state: State) -> None:
        if item.action == "user":
            state.user = item.args["user"]
        elif item.action == "env":
            state.envs.update(item.args["envs"])

    def _cache_entry(
        self, status: str, key: str, phase: str, index: int, reason: str | None = None
    ) -> None:
        self.log.add(
            "cache",
            f"cache {status}: layer {key[:12]}",
            level="info",
            phase=phase,
            step_index=index,
            cache_kind="layer",
            cache_status=status,
            cache_subject=key,
            cache_reason=reason,
        )

    def _copy_digest(self, item: plans.Step) -> list[Any]:
        found = []
        for source in item.args["sources"]:
            for path, entry in plans.context_entries(self.plan, source):
                found.append([path, entry.get("blob_id"), entry.get("mode")])
        return found

    # --- one step in a sandbox --------------------------------------------------------------
    def _run_step(
        self, index: int, item: plans.Step, state: State, layers: list[str], key: str, phase: str
    ) -> None:
        config = self.build.build_config or {}
        sandbox_id = f"tbs_{self.build.public_id[3:]}_{index}"
        spec = CreateSpec(
            sandbox_id=sandbox_id,
            template=self.plan.image,
            image_suite=self.plan.suite,
            layers=tuple(reversed(layers)),
            memory_mb=int(config.get("memory_mib", 1024)),
            vcpus=int(config.get("vcpus", 2)),
            disk_mb=int(config.get("disk_mb", 4096)),
            egress=EgressPolicy(internet=bool(config.get("internet_access", True))),
            cwd="/",
            default_user="root",
        )
        TemplateBuild.objects.filter(pk=self.build.pk).update(sandbox_id=sandbox_id)
        try:
            try:
                self.driver.destroy(sandbox_id)  # what an interrupted run of this build left
                self.driver.create(spec)
            except RuntimeError_ as exc:
                raise StepFailed("build_sandbox_failed", str(exc), index, "prepare") from None
            self._check()
            if item.action == "copy":
                self._copy(sandbox_id, item, state)
            else:
                self._exec(sandbox_id, index, item, state, phase)
            self._check()
            self.driver.capture_layer(sandbox_id, key)
        finally:
            self.running = None
            try:
                self.driver.destroy(sandbox_id)
            except Exception:
                log.exception("removing build sandbox %s failed", sandbox_id)
            TemplateBuild.objects.filter(pk=self.build.pk).update(sandbox_id="")

    def _exec(
        self, sandbox_id: str, index: int, item: plans.Step, state: State, phase: str
    ) -> None:
        command, user = command_of(item, state)
        envs = dict(state.envs)
        uses = item.args.get("secrets")
        # Declarative run steps get every secret; a Dockerfile RUN only what it mounts.
        wanted = [
            s
            for s in self.secrets
            if (uses is None and item.action == "run" and self.plan.source_type != "dockerfile")
            or (uses is not None and s["id"] in uses)
        ]
        store = self.driver.files(sandbox_id)
        made_dir = bool(wanted) and not store.exists(SECRETS_DIR)
        if wanted:
            store.makedirs(SECRETS_DIR, user="root")
            for secret in wanted:
                store.write(
                    f"{SECRETS_DIR}/{secret['id']}",
                    [secret["value"].encode()],
                    limit=plans.MAX_SECRET_BYTES,
                    user=user,
                    mode=0o400,
                )
                if uses is None and secret["id"].replace(".", "_").replace("-", "_").isidentifier():
                    envs[secret["id"].replace(".", "_").replace("-", "_")] = secret["value"]
        cwd = state.workdir if store.is_dir(state.workdir) else "/"
        request = ExecRequest(
            command=command,
            shell=True,
            cwd=cwd,
            envs=envs,
            timeout_secs=None,
            stdin=False,
            user=user,
        )
        try:
            pid = self.driver.start_process(sandbox_id, request, default_cwd="/", envs={})
        except RuntimeError_ as exc:
            raise StepFailed(
                "build_step_failed", f"step {index + 1}: {exc}", index, "build_step"
            ) from None
        self.running = (sandbox_id, pid)
        if self.cancel.is_set():
            self.driver.kill_process(sandbox_id, pid)
        self.log.tail.clear()
        exit_code: int | None = None
        for event in self.driver.follow_output(sandbox_id, pid, stop=self.cancel):
            if event.kind in ("stdout", "stderr"):
                self.log.feed(event.kind, event.data, phase=phase, step_index=index)
            elif event.kind == "exit":
                exit_code = event.exit_code
        self.log.flush(phase=phase, step_index=index)
        self.running = None
        if wanted:  # never part of a layer
            for secret in wanted:
                if store.exists(f"{SECRETS_DIR}/{secret['id']}"):
                    store.remove(f"{SECRETS_DIR}/{secret['id']}")
            if made_dir:
                store.remove(SECRETS_DIR)
        self._check()
        if exit_code is None:
            exit_code = self.driver.wait_process(sandbox_id, pid, 5)
        if exit_code != 0:
            last = "\n".join(list(self.log.tail)[-10:])
            raise StepFailed(
                "build_step_failed",
                f"step {index + 1} ({item.label()}) exited with code {exit_code}"
                + (f"; last output:\n{last}" if last else ""),
                index,
                "build_step",
            )

    def _copy(self, sandbox_id: str, item: plans.Step, state: State) -> None:
        store = self.driver.files(sandbox_id)
        team_pk = self.build.template.team_id
        dst = item.args["dst"]
        if not dst.startswith("/"):
            dst = posixpath.join(state.workdir, dst)
        owner = item.args.get("user") or "root"
        mode = item.args.get("mode")
        sources = item.args["sources"]
        for source in sources:
            entries = plans.context_entries(self.plan, source)
            prefix = posixpath.normpath(source).lstrip("/")
            single = (
                len(entries) == 1
                and entries[0][0] == prefix
                and entries[0][1]["entry_type"] == "file"
            )
            for path, entry in entries:
                if single:
                    into_dir = dst.endswith("/") or len(sources) > 1 or store.is_dir(dst)
                    target = posixpath.join(dst, posixpath.basename(path)) if into_dir else dst
                else:
                    rel = path[len(prefix) + 1 :] if prefix not in ("", ".") else path
                    target = posixpath.join(dst, rel) if rel else dst
                target = posixpath.normpath(target)
                if entry["entry_type"] == "dir":
                    store.makedirs(target, user=owner)
                    continue
                store.makedirs(posixpath.dirname(target) or "/", user=owner)
                file_mode = int(mode or entry.get("mode") or "0644", 8)
                store.write(
                    target,
                    blobs.read_chunks(team_pk, entry["blob_id"]),
                    limit=settings.TEMPLATE_MAX_CONTEXT_FILE_BYTES,
                    user=owner,
                    mode=file_mode,
                )

    # --- endings -----------------------------------------------------------------------------
    def _finish_ready(self, state: State, layers: list[str], key: str) -> None:
        build, plan = self.build, self.plan
        defaults = dict(state.defaults)
        defaults.update({k: v for k, v in plan.runtime.items() if k != "envs"})
        envs = dict(defaults.get("envs") or {})
        envs.update(plan.runtime.get("envs") or {})
        if envs:
            defaults["envs"] = envs
        if self.counters["layer_misses"] or self.counters["layer_bypasses"]:
            self.counters["final_artifact_stores"] = 1
            self.counters["final_artifact_misses"] = 1
        else:
            self.counters["final_artifact_hits"] = 1
        now = timezone.now()
        with transaction.atomic():
            updated = TemplateBuild.objects.filter(pk=build.pk, status=BuildStatus.BUILDING).update(
                status=BuildStatus.READY,
                layers=layers,
                cache_key=key,
                runtime_defaults=defaults,
                oci_metadata=plan.oci_metadata,
                cache_summary=self.counters,
                cache_hits=self.counters["layer_hits"],
                finished_at=now,
                updated_at=now,
                secrets_sealed="",
                sandbox_id="",
            )
            if not updated:
                raise Cancelled()
            template = build.template
            for tag in build.tags or [template.default_tag]:
                TemplateTag.objects.update_or_create(
                    template=template, tag=tag, defaults={"build": build, "created_at": now}
                )
            type(template).objects.filter(pk=template.pk).update(updated_at=now)
            template.refresh_from_db()
            followers.tags_moved(template)
            hits = self.counters["layer_hits"]
            # In the same transaction: a reader sees the build ready only with its end entry.
            self.log.add(
                "end",
                f"Built {template.name} ({len(layers)} layer(s), {hits} from the cache)",
                phase="finalize",
                result=shapes.template_info(template),
                result_metadata={
                    "runtime_defaults": shapes.runtime_defaults(defaults),
                    "oci_metadata": plan.oci_metadata,
                },
            )

    @transaction.atomic  # the error entry commits with the status
    def _finish_failed(self, failure: StepFailed) -> None:
        message = self.log.mask(failure.message)
        detail = {
            "code": failure.code,
            "message": message,
            "phase": failure.phase,
            "retryable": failure.code in ("build_failed", "build_sandbox_failed"),
            "suggested_action": "Fix the step and build again; `nullspace template logs "
            f"{self.build.public_id}` shows its output.",
            "step_index": failure.step_index,
            "build_id": self.build.public_id,
        }
        detail = {k: v for k, v in detail.items() if v is not None}
        now = timezone.now()
        updated = (
            TemplateBuild.objects.filter(pk=self.build.pk)
            .exclude(status__in=BUILD_TERMINAL)
            .update(
                status=BuildStatus.ERROR,
                error=message,
                error_detail=detail,
                failure_phase=failure.phase,
                cache_summary=self.counters,
                cache_hits=self.counters["layer_hits"],
                finished_at=now,
                updated_at=now,
                secrets_sealed="",
                sandbox_id="",
            )
        )
        if updated:
            self.log.add(
                "error",
                message,
                level="error",
                phase=failure.phase,
                step_index=failure.step_index,
                error_detail=detail,
            )

    def _finish_cancelled(self) -> None:
        finish_cancelled(self.build, self.cancel_reason or "cancelled", self.log)


@transaction.atomic
def finish_cancelled(build: TemplateBuild, reason: str, buildlog: BuildLog | None = None) -> bool:
    now = timezone.now()
    updated = (
        TemplateBuild.objects.filter(pk=build.pk)
        .exclude(status__in=BUILD_TERMINAL)
        .update(
            status=BuildStatus.CANCELLED,
            cancellation_reason=reason[:200],
            finished_at=now,
            updated_at=now,
            secrets_sealed="",
        )
    )
    if updated:
        (buildlog or BuildLog(build, [])).add(
            "cancelled", f"Build cancelled: {reason}", level="warn", phase="cancelled"
        )
    return bool(updated)


def fail_interrupted(build: TemplateBuild) -> None:
    """A build whose worker is gone for good ends `error` (phase interrupted), saying so."""
    Builder(build, plans.Plan(source_type=build.source_type), [])._finish_failed(
        StepFailed(
            "build_interrupted",
            "the worker running this build stopped and it could not be run again",
            None,
            "interrupted",
        )
    )


def run(build_public_id: str) -> None:
    """Run the build (a job: console/sandbox_templates/jobs.py). A build already over is
    left alone; one found `building` (its worker stopped) starts again from its plan."""
    build = (
        TemplateBuild.objects.select_related("template__team", "retry_of")
        .filter(public_id=build_public_id)
        .first()
    )
    if build is None or build.status in BUILD_TERMINAL:
        return
    if build.cancel_requested_at is not None:
        finish_cancelled(build, build.cancellation_reason or "cancelled by request")
        return
    now = timezone.now()
    TemplateBuild.objects.filter(pk=build.pk).update(
        status=BuildStatus.BUILDING, started_at=now, updated_at=now
    )
    build.refresh_from_db()
    secrets = sealing.unseal(build.secrets_sealed)
    team: Team = build.template.team
    try:
        plan = plans.from_request(team, {**build.request, "build_secrets": secrets or None})
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        Builder(build, plans.Plan(source_type=build.source_type), secrets)._finish_failed(
            StepFailed("invalid_build", message, None, "preflight")
        )
        return
    Builder(build, plan, secrets).run()
