"""Which template, and which build of it, a pool's sandboxes are made from
(docs/warm-pools.md, "Pinned or tracking a tag").

A pool names its template the way `sandbox create --template` does. A builtin (`base`,
also written `nullspace/base`, `base:latest`) has no builds: the pool keeps its name. A
custom template (docs/templates.md) is pinned to one build: the build its ref names
when the pool is made or changed (`pinned_build`), or the build its tag points at, moved
whenever the tag moves (`track_tag`, console/warm_pools/rollout.py). The pool's
sandboxes are created from `<template>:<build id>`, so a tag that moves later never
changes what a pinned pool makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.errors import DomainError
from console.models import Project, Template, TemplateBuild, TemplateTag, WarmPool
from console.sandbox_templates import refs
from console.sandbox_templates.models import BuildStatus
from console.sandboxes import service as sandboxes

BUILTIN_NAMESPACE = "nullspace/"
BUILTIN_TAGS = ("latest", "default")


@dataclass(frozen=True)
class Pin:
    """What a pool makes: `template` is the ref its sandboxes are created with."""

    template: str
    custom_template: Template | None = None
    build: TemplateBuild | None = None


def pin(project: Project, ref: str, *, track_tag: str = "") -> Pin:
    """The pool's template and build for `ref` (and the tag it follows, if any)."""
    found = refs.resolve(project.team, ref)
    if found.template is None:
        if track_tag:
            raise DomainError(
                "invalid_request",
                f"{ref!r} is a builtin template: it has no builds or tags to track",
                suggested_action="Leave --version-policy unset (builtins stay pinned), or "
                "use a custom template (nullspace template build ... --name NAME).",
                details={"field": "track_tag"},
            )
        return Pin(resolve_template(project, ref))
    template = found.template
    if track_tag:
        if found.qualifier not in ("", track_tag):
            raise DomainError(
                "invalid_request",
                f"template_ref {ref!r} names {found.qualifier!r}, but the pool tracks tag "
                f"{track_tag!r}",
                suggested_action=f"Give the template without a qualifier: {template.name}.",
                details={"field": "template_ref"},
            )
        build = tagged_build(template, track_tag)
        if build is None:
            raise DomainError(
                "template_tag_not_found",
                f"Template {template.name!r} has no tag {track_tag!r}",
                suggested_action=f"List its tags: nullspace template tag list {template.name}",
                details={"field": "track_tag", "tag": track_tag},
            )
        return custom_pin(template, build)
    build = refs.usable_build(project.team, ref).build
    assert build is not None  # a custom template's usable build
    return custom_pin(template, build)


def custom_pin(template: Template, build: TemplateBuild) -> Pin:
    return Pin(build_ref(template, build), template, build)


def tagged_build(template: Template, tag: str) -> TemplateBuild | None:
    """The ready build `tag` points at (tags only ever point at ready builds)."""
    row = TemplateTag.objects.select_related("build").filter(template=template, tag=tag).first()
    if row is None or row.build.status != BuildStatus.READY:
        return None
    return row.build


def build_ref(template: Template, build: TemplateBuild) -> str:
    """A ref that names exactly this build: by the owner's slug, so another team's
    public template resolves too, and an alias keeps answering after a rename."""
    return f"{template.team.slug}/{template.name}:{build.public_id}"


def display_name(pool: WarmPool) -> str:
    """`resolved_template`: the builtin's name, or the custom template's current name."""
    if pool.custom_template is not None:
        return pool.custom_template.name
    return pool.template


def fits(project: Project, pool: WarmPool, ref: str) -> bool:
    """Whether a create asking for `ref` may get one of the pool's sandboxes: the same
    template; a ref naming one build must name the pool's."""
    if pool.custom_template_id is None:
        return resolve_template(project, ref) == pool.template
    found = refs.resolve(project.team, ref)
    if found.template is None or found.template.pk != pool.custom_template_id:
        return False
    if found.qualifier.startswith("tb_"):
        return found.build is not None and found.build.pk == pool.template_build_id
    return True


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
