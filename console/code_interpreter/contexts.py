"""Contexts: a sandbox's persistent kernels. Each is found by the sandbox it belongs to,
so another sandbox's (or another project's) context is `context_not_found`."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from console.code_interpreter import kernels
from console.errors import DomainError
from console.models import CodeContext, Sandbox
from console.runtime import get_driver
from console.runtime.base import RuntimeError_
from console.sandboxes import service as sandboxes

# What this server can run: a Python kernel (ipykernel). Other languages are refused.
LANGUAGES = ("python",)
LANGUAGE_ALIASES = {"python": "python", "python3": "python", "py": "python"}
MAX_CONTEXTS_PER_SANDBOX = 16


def to_dict(context: CodeContext) -> dict[str, Any]:
    """CodeContext: the client builds it from exactly id, language and cwd."""
    return {"id": context.public_id, "language": context.language, "cwd": context.cwd}


def language(value: Any) -> str:
    if value is None:
        return "python"
    if not isinstance(value, str) or not value.strip():
        raise DomainError("invalid_request", "language must be a non-empty string")
    found = LANGUAGE_ALIASES.get(value.strip().lower())
    if found is None:
        raise DomainError(
            "unsupported_language",
            f"Language {value[:40]!r} is not available: this server runs {', '.join(LANGUAGES)}",
            details={"supported": list(LANGUAGES)},
        )
    return found


def _cwd(sandbox: Sandbox, value: Any) -> str:
    if value is None:
        return sandbox.cwd
    if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 1024:
        raise DomainError(
            "invalid_request", "cwd must be a non-empty path of at most 1024 characters"
        )
    if ".nullspace" in value.split("/"):
        raise DomainError(
            "invalid_request", f"cwd is reserved: {value[:200]} (a .nullspace directory)"
        )
    files = get_driver().files(sandbox.runtime_id)
    try:
        path = files.path(value)
        if not files.is_dir(path):
            raise DomainError("invalid_request", f"cwd {path} is not a directory in the sandbox")
    except RuntimeError_ as exc:
        raise DomainError("invalid_request", f"cwd {value[:200]}: {exc}") from exc
    return path


def get(sandbox: Sandbox, public_id: str) -> CodeContext:
    context = (
        CodeContext.objects.select_related("sandbox")
        .filter(sandbox=sandbox, public_id=public_id)
        .first()
    )
    if context is None:
        raise DomainError("context_not_found", f"Code context {public_id} not found")
    return context


def listed(sandbox: Sandbox) -> list[CodeContext]:
    return list(CodeContext.objects.select_related("sandbox").filter(sandbox=sandbox))


def create(sandbox: Sandbox, *, cwd: Any = None, language_name: Any = None) -> CodeContext:
    """A new context with its kernel started (so a sandbox that cannot run one says so now)."""
    sandboxes.require_running(sandbox)
    lang = language(language_name)
    path = _cwd(sandbox, cwd)
    if CodeContext.objects.filter(sandbox=sandbox).count() >= MAX_CONTEXTS_PER_SANDBOX:
        raise DomainError(
            "quota_exceeded",
            f"A sandbox holds at most {MAX_CONTEXTS_PER_SANDBOX} code contexts",
            suggested_action="Remove a context you no longer need.",
        )
    context = CodeContext.objects.create(
        project=sandbox.project, sandbox=sandbox, language=lang, cwd=path
    )
    try:
        kernels.start(context)
    except BaseException:
        context.delete()
        raise
    return context


def default(sandbox: Sandbox) -> CodeContext:
    """The context of runs that name none: made on first use, kept for the sandbox's life."""
    found = CodeContext.objects.select_related("sandbox").filter(sandbox=sandbox, is_default=True)
    context = found.first()
    if context is not None:
        return context
    try:
        with transaction.atomic():
            context = CodeContext.objects.create(
                project=sandbox.project, sandbox=sandbox, cwd=sandbox.cwd, is_default=True
            )
    except IntegrityError:  # made meanwhile by another request
        return found.get()
    return context


def remove(context: CodeContext) -> None:
    kernels.stop(context)
    context.delete()


def restart(context: CodeContext) -> None:
    """A fresh kernel in the same context: its variables are gone, its id and cwd stay."""
    sandboxes.require_running(context.sandbox)
    kernels.stop(context)
    kernels.start(context)
