"""Which template a pool's sandboxes are made from.

A pool names its template the way `sandbox create --template` does; this server's
templates are its builtin images (`base`, console/runtime/image.py), also written as
`nullspace/base`, `base:latest` or `nullspace/base:latest`. Pools are pinned: the name
is resolved once, when the pool is made or its template changed.
"""

from __future__ import annotations

from console.errors import DomainError
from console.models import Project
from console.sandboxes import service as sandboxes

BUILTIN_NAMESPACE = "nullspace/"
BUILTIN_TAGS = ("latest", "default")


def resolve_template(project: Project, ref: str) -> str:
    """The template name sandboxes are created with; template_not_found when none."""
    for name in _candidates(ref):
        if sandboxes.template_exists(project, name):
            return name
    raise DomainError(
        "template_not_found",
        f"Template {ref!r} not found",
        suggested_action="Use a template that exists, e.g. base.",
    )


def _candidates(ref: str) -> list[str]:
    """The builtin's bare name first (`nullspace/base:latest` is `base`), so that every
    spelling of a builtin resolves to the one name sandboxes are compared by."""
    names = []
    if ref.startswith(BUILTIN_NAMESPACE):
        name, _, tag = ref.removeprefix(BUILTIN_NAMESPACE).partition(":")
        if not tag or tag in BUILTIN_TAGS:
            names.append(name)
    name, _, tag = ref.partition(":")
    if tag in BUILTIN_TAGS:
        names.append(name)
    names.append(ref)
    return list(dict.fromkeys(names))
