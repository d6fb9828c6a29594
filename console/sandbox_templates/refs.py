"""Template refs (docs/templates.md): what a ref names, for the team that asks.

    <name>[:tag]             the team's template (or an alias of it), else a builtin
    <name>:tb_<id>           one build of it
    nullspace/<name>[:tag]   a builtin; the client also writes `--from-template demo` as
                             `nullspace/demo:latest`, so a team template of that name
                             answers when no builtin has it
    <namespace>/<name>[:q]   a team's template by the team's slug (another team's only
                             when public)
    tmpl_<id>                a template by id

A tag that is not set falls back to the template's default tag only for `latest`
(what the client sends when none was given). Private templates of other teams answer
exactly like templates that do not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from console.errors import DomainError
from console.models import Team, Template, TemplateAlias, TemplateBuild, TemplateTag
from console.runtime.image import VARIANTS
from console.sandbox_templates.models import BuildStatus, Visibility

BUILTIN_NAMESPACE = "nullspace"
BUILTIN_TAGS = ("default", "latest")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_REF = 300


@dataclass
class Resolved:
    """A builtin (`builtin` is its image name) or a team template, with the build the
    qualifier picked (None when no build answers it yet)."""

    builtin: str | None = None
    template: Template | None = None
    build: TemplateBuild | None = None
    qualifier: str = ""

    @property
    def owned(self) -> bool:
        return self.template is not None and self.template.pk is not None


def not_found(ref: str) -> DomainError:
    return DomainError(
        "template_not_found",
        f"Template {ref!r} not found",
        suggested_action="List templates with `nullspace template list`.",
    )


def check_name(name: object, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DomainError(
            "invalid_request",
            f"template {what} must be 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not TAG.fullmatch(tag) or tag.startswith("tb_"):
        raise DomainError(
            "invalid_request",
            f"tag {tag!r} must be 1-63 letters, digits, '.', '_' or '-' (not starting with tb_)",
        )
    return tag


def _split(ref: str) -> tuple[str, str, str]:
    """(namespace, name, qualifier) of a ref; namespace and qualifier may be empty."""
    namespace, slash, rest = ref.partition("/")
    if not slash:
        namespace, rest = "", ref
    name, colon, qualifier = rest.partition(":")
    if not name or "/" in rest or (colon and not qualifier):
        raise not_found(ref)
    return namespace, name, qualifier


def _visible(team: Team) -> dict[str, object]:
    return {"team": team}


def _by_name(team: Team, name: str, *, public_only: bool = False) -> Template | None:
    rows = Template.objects.select_related("team").filter(team=team)
    if public_only:
        rows = rows.filter(visibility=Visibility.PUBLIC)
    found = rows.filter(name=name).first()
    if found is None:
        alias = (
            TemplateAlias.objects.select_related("template__team")
            .filter(team=team, alias=name)
            .first()
        )
        if alias is not None and (
            not public_only or alias.template.visibility == Visibility.PUBLIC
        ):
            found = alias.template
    return found


def pick_build(template: Template, qualifier: str) -> TemplateBuild | None:
    """The build a qualifier names: a build id, a tag, or (none, `latest`) the default tag."""
    if qualifier.startswith("tb_"):
        return template.builds.filter(public_id=qualifier).first()
    tag = qualifier or template.default_tag
    row = TemplateTag.objects.select_related("build").filter(template=template, tag=tag).first()
    if row is None and qualifier == "latest":
        row = (
            TemplateTag.objects.select_related("build")
            .filter(template=template, tag=template.default_tag)
            .first()
        )
    return row.build if row is not None else None


def resolve(team: Team, ref: object, *, need_build: bool = False) -> Resolved:
    """What `ref` names for `team`; template_not_found when nothing (visible) does.
    With need_build, a qualifier that names no build is not found either."""
    if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_REF:
        raise not_found(str(ref)[:100])
    ref = ref.strip()
    if ref.startswith("tmpl_") and "/" not in ref and ":" not in ref:
        template = Template.objects.select_related("team").filter(public_id=ref).first()
        if template is None or (
            template.team_id != team.pk and template.visibility != Visibility.PUBLIC
        ):
            raise not_found(ref)
        return _with_build(ref, template, "", need_build)
    namespace, name, qualifier = _split(ref)
    if namespace in ("", BUILTIN_NAMESPACE):
        if name in VARIANTS and (not qualifier or qualifier in BUILTIN_TAGS):
            return Resolved(builtin=name, qualifier=qualifier)
        template = _by_name(team, name)
        if template is None:
            raise not_found(ref)
        return _with_build(ref, template, qualifier, need_build)
    if not SLUG.fullmatch(namespace):
        raise not_found(ref)
    owner = Team.objects.filter(slug=namespace).first()
    if owner is None:
        raise not_found(ref)
    template = _by_name(owner, name, public_only=owner.pk != team.pk)
    if template is None:
        raise not_found(ref)
    return _with_build(ref, template, qualifier, need_build)


def _with_build(ref: str, template: Template, qualifier: str, need_build: bool) -> Resolved:
    build = pick_build(template, qualifier)
    if need_build and build is None:
        raise not_found(ref)
    return Resolved(template=template, build=build, qualifier=qualifier)


def resolve_owned(team: Team, ref: object) -> Resolved:
    """Like resolve, for changes: only the team's own templates (a builtin or another
    team's public template is not yours to change)."""
    found = resolve(team, ref)
    if found.template is None:
        raise DomainError("permission_denied", f"Builtin template {ref!r} cannot be changed")
    if found.template.team_id != team.pk:
        raise DomainError("permission_denied", f"Template {ref!r} belongs to another team")
    return found


def usable_build(team: Team, ref: str) -> Resolved:
    """What a sandbox of `ref` runs on: a builtin, or a ready build of a visible template."""
    found = resolve(team, ref)
    if found.builtin is not None:
        return found
    if found.build is None or found.build.status != BuildStatus.READY:
        raise DomainError(
            "template_not_found",
            f"Template {ref!r} has no ready build"
            + (f" tagged {found.qualifier!r}" if found.qualifier else ""),
            suggested_action="Build it first: nullspace template build ... --name NAME",
        )
    return found
