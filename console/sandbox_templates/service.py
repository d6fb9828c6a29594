"""What the /v1 template routes and the console pages do: start, cancel, retry and promote
builds; tags, aliases, renames, visibility, claims and deletes (docs/templates.md)."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from console.actor import Actor
from console.errors import DomainError
from console.jobs import enqueue
from console.models import (
    LIVE_STATUSES,
    Project,
    Sandbox,
    Team,
    Template,
    TemplateAlias,
    TemplateBuild,
    TemplateClaim,
    TemplateTag,
)
from console.runtime.image import VARIANTS
from console.sandbox_templates import engine, followers, refs, sealing
from console.sandbox_templates import plan as plans
from console.sandbox_templates.jobs import KIND
from console.sandbox_templates.models import BUILD_TERMINAL, BuildStatus, Visibility

MAX_TAGS = 20
MAX_TEMPLATES_PER_TEAM = 500
CLAIM_LIFETIME = timedelta(hours=24)
CANCEL_WAIT_SECONDS = 15


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise DomainError("invalid_request", f"tags must be a list of at most {MAX_TAGS}")
    return list(dict.fromkeys(refs.check_tag(t) for t in value))


def _template_for_build(team: Team, project: Project, name: str) -> Template:
    if name in VARIANTS:
        raise DomainError(
            "template_name_conflict",
            f"{name!r} is a builtin template's name; choose another",
        )
    alias = TemplateAlias.objects.filter(team=team, alias=name).select_related("template").first()
    if alias is not None:
        raise DomainError(
            "template_name_conflict",
            f"{name!r} is an alias of template {alias.template.name!r} (kept by a rename); "
            "remove the alias first",
        )
    template = Template.objects.filter(team=team, name=name).first()
    if template is not None:
        return template
    if Template.objects.filter(team=team).count() >= MAX_TEMPLATES_PER_TEAM:
        raise DomainError(
            "quota_exceeded", f"a team may have at most {MAX_TEMPLATES_PER_TEAM} templates"
        )
    TemplateClaim.objects.filter(team=team, name=name).delete()  # the team's own claim is used
    try:
        with transaction.atomic():
            return Template.objects.create(team=team, project=project, name=name)
    except IntegrityError:
        return Template.objects.get(team=team, name=name)


def principal(actor: Actor) -> str:
    """How a build names who started or cancelled it: `api_key:<id>`, `user:<pk>`, or
    `system` (the build's `triggered_by`, `cancel_requested_by`)."""
    if actor.api_key is not None:
        return f"api_key:{actor.api_key.public_id}"
    if actor.user is not None:
        return f"user:{actor.user.pk}"
    return "system"


def start_build(
    project: Project,
    body: dict[str, Any],
    *,
    actor: Actor,
    retry_of: TemplateBuild | None = None,
) -> TemplateBuild:
    """Check the request, record the build (`waiting`) and queue its job."""
    team = project.team
    name, _, tag = str(body.get("name") or "").partition(":")
    refs.check_name(name)
    tags = _tags(body.get("tags")) or ([refs.check_tag(tag)] if tag else [])
    plan = plans.from_request(team, body)  # refuses what cannot be built, before any row
    secret_values = plan.secrets
    template = _template_for_build(team, project, name)
    dockerfile = body.get("dockerfile")
    context = body.get("build_context")
    with transaction.atomic():
        build = TemplateBuild.objects.create(
            template=template,
            project=project,
            tags=tags or [template.default_tag],
            source_type=plan.source_type,
            build_backend="native",
            request=plans.public_request(body),
            secrets_sealed=sealing.seal(secret_values),
            source_digest=plans.source_digest(body),
            dockerfile_digest=(
                "sha256:" + hashlib.sha256(dockerfile.encode()).hexdigest()
                if isinstance(dockerfile, str)
                else ""
            ),
            context_digest=(
                "sha256:" + hashlib.sha256(repr(sorted(plan.context.items())).encode()).hexdigest()
                if context
                else ""
            ),
            base_image=plan.image,
            image_suite=plan.suite,
            build_config=plans.build_config(body),
            steps_total=len(plan.steps),
            triggered_by=principal(actor),
            retry_of=retry_of,
        )
        enqueue(KIND, {"build_id": build.public_id}, max_attempts=2)
    return build


def get_build(team: Team, build_id: str) -> TemplateBuild:
    build = (
        TemplateBuild.objects.select_related("template__team", "retry_of")
        .filter(public_id=build_id, template__team=team)
        .first()
    )
    if build is None:
        raise DomainError("template_build_not_found", f"Template build {build_id!r} not found")
    return build


def cancel(build: TemplateBuild, reason: str | None, *, actor: Actor) -> TemplateBuild:
    """Ask the build to stop; wait a little for it to say it has (its step is killed)."""
    if build.status in BUILD_TERMINAL:
        return build
    now = timezone.now()
    TemplateBuild.objects.filter(pk=build.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now,
        cancel_requested_by=principal(actor),
        cancellation_reason=(reason or "cancelled by request")[:200],
        updated_at=now,
    )
    build.refresh_from_db()
    if build.status == BuildStatus.WAITING:
        engine.finish_cancelled(build, build.cancellation_reason)
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while build.status not in BUILD_TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        build.refresh_from_db()
    return build


def retry(build: TemplateBuild, body: dict[str, Any], *, actor: Actor) -> TemplateBuild:
    if build.status not in (BuildStatus.ERROR, BuildStatus.CANCELLED, BuildStatus.READY):
        raise DomainError("conflict", f"build {build.public_id} is still {build.status}")
    request = dict(build.request)
    request.pop("build_secret_ids", None)
    request["name"] = build.template.name
    if body.get("tags") is not None:
        request["tags"] = body["tags"]
    else:
        request["tags"] = build.tags
    if body.get("build_secrets") is not None:
        request["build_secrets"] = body["build_secrets"]
    if body.get("base_image_auth") or body.get("registry_auth"):
        raise DomainError("invalid_request", "registry credentials are not used by this server")
    project = build.project or build.template.project
    if project is None:
        raise DomainError("conflict", "the project that made this build is gone")
    return start_build(project, request, actor=actor, retry_of=build)


def promote(build: TemplateBuild, tag: Any) -> Template:
    tag = refs.check_tag(tag)
    if build.status != BuildStatus.READY:
        raise DomainError(
            "template_build_not_promotable",
            f"build {build.public_id} is {build.status}; only a ready build can be promoted",
        )
    _point(build.template, tag, build)
    return build.template


def _point(template: Template, tag: str, build: TemplateBuild) -> None:
    now = timezone.now()
    with transaction.atomic():
        TemplateTag.objects.update_or_create(
            template=template, tag=tag, defaults={"build": build, "created_at": now}
        )
        Template.objects.filter(pk=template.pk).update(updated_at=now)
        followers.tags_moved(template)


def assign_tags(team: Team, ref: str, tags: Any) -> Template:
    found = refs.resolve_owned(team, ref)
    assert found.template is not None
    wanted = _tags(tags)
    if not wanted:
        raise DomainError("invalid_request", "tags must name at least one tag")
    if found.build is None or found.build.status != BuildStatus.READY:
        raise DomainError("template_build_not_found", f"{ref!r} names no ready build to tag")
    for tag in wanted:
        _point(found.template, tag, found.build)
    return found.template


def remove_tag(team: Team, ref: str, tag: str) -> None:
    found = refs.resolve_owned(team, ref)
    deleted, _ = TemplateTag.objects.filter(template=found.template, tag=tag).delete()
    if not deleted:
        raise DomainError("template_tag_not_found", f"{ref!r} has no tag {tag!r}")


def remove_alias(team: Team, ref: str, alias: str) -> None:
    found = refs.resolve_owned(team, ref)
    deleted, _ = TemplateAlias.objects.filter(template=found.template, alias=alias).delete()
    if not deleted:
        raise DomainError("template_alias_not_found", f"{ref!r} has no alias {alias!r}")


def rename(team: Team, ref: str, new_name: Any) -> Template:
    found = refs.resolve_owned(team, ref)
    template = found.template
    assert template is not None
    new_name = refs.check_name(new_name, "new_name")
    if new_name in VARIANTS:
        raise DomainError("template_name_conflict", f"{new_name!r} is a builtin's name")
    if new_name == template.name:
        return template
    if Template.objects.filter(team=team, name=new_name).exists():
        raise DomainError("template_name_conflict", f"a template named {new_name!r} exists")
    with transaction.atomic():
        TemplateAlias.objects.filter(team=team, alias=new_name, template=template).delete()
        if TemplateAlias.objects.filter(team=team, alias=new_name).exists():
            raise DomainError("template_name_conflict", f"{new_name!r} is another template's alias")
        TemplateAlias.objects.update_or_create(
            team=team, alias=template.name, defaults={"template": template}
        )
        template.name = new_name
        template.updated_at = timezone.now()
        template.save(update_fields=["name", "updated_at"])
    return template


def set_visibility(team: Team, ref: str, visibility: Any) -> Template:
    found = refs.resolve_owned(team, ref)
    template = found.template
    assert template is not None
    if visibility not in Visibility.values:
        raise DomainError("invalid_request", "visibility must be private or public")
    template.visibility = visibility
    template.updated_at = timezone.now()
    template.save(update_fields=["visibility", "updated_at"])
    return template


def in_use(template: Template) -> list[str]:
    """What keeps the template from being deleted: its live sandboxes (and warm pools)."""
    users = [
        f"sandbox {sid}"
        for sid in Sandbox.objects.filter(
            template_build__template=template, status__in=LIVE_STATUSES
        ).values_list("public_id", flat=True)[:5]
    ]
    users += _warm_pools_using(template)
    return users


def _warm_pools_using(template: Template) -> list[str]:
    """Warm pools (console/warm_pools/) whose template is this one, by any name it answers
    to, with or without a qualifier."""
    from console.warm_pools.models import WarmPool  # the warm-pool domain builds on this one

    slug, name = template.team.slug, template.name
    names = [name, f"{slug}/{name}", f"nullspace/{name}", template.public_id]
    names += [alias for alias in template.aliases.values_list("alias", flat=True)]
    match = Q()
    for known in names:
        for field in ("template", "template_ref"):
            match |= Q(**{field: known}) | Q(**{f"{field}__startswith": f"{known}:"})
    match |= Q(custom_template=template)
    rows = (
        WarmPool.objects.filter(project__team=template.team).exclude(state="deleted").filter(match)
    )
    return [f"warm pool {pid}" for pid in rows.values_list("public_id", flat=True)[:5]]


def delete(team: Team, ref: str, *, actor: Actor) -> None:
    """Delete a template no sandbox or pool uses; its running builds are cancelled by the actor."""
    found = refs.resolve_owned(team, ref)
    template = found.template
    assert template is not None
    users = in_use(template)
    if users:
        raise DomainError(
            "template_in_use",
            f"template {template.name!r} is used by {', '.join(users)}; kill them first",
        )
    running = template.builds.exclude(status__in=BUILD_TERMINAL)
    for build in running:
        cancel(build, "the template was deleted", actor=actor)
    template.delete()


def reserve(team: Team, ref: Any) -> tuple[str, str, Any]:
    if not isinstance(ref, str):
        raise DomainError("invalid_request", "template_ref must be a string")
    namespace, slash, rest = ref.partition("/")
    if not slash:
        namespace, rest = team.slug, ref
    if namespace != team.slug:
        raise DomainError(
            "permission_denied",
            f"names are reserved in your team's namespace {team.slug!r}, not {namespace!r}",
        )
    name = refs.check_name(rest.partition(":")[0])
    if name in VARIANTS or Template.objects.filter(team=team, name=name).exists():
        raise DomainError("template_name_conflict", f"{name!r} is already taken")
    now = timezone.now()
    TemplateClaim.objects.filter(team=team, expires_at__lte=now).delete()
    if TemplateClaim.objects.filter(team=team, name=name).exists():
        raise DomainError("template_name_conflict", f"{name!r} is already reserved")
    token = "tclm_" + secrets.token_urlsafe(24)
    claim = TemplateClaim.objects.create(
        team=team,
        name=name,
        token_digest=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=now + CLAIM_LIFETIME,
    )
    return token, f"{team.slug}/{name}:default", claim.expires_at


def release(team: Team, token: str) -> None:
    digest = hashlib.sha256(token.encode()).hexdigest()
    deleted, _ = TemplateClaim.objects.filter(team=team, token_digest=digest).delete()
    if not deleted:
        raise DomainError("template_claim_not_found", "no such claim token")


def visible_templates(team: Team) -> list[Template]:
    return list(
        Template.objects.select_related("team")
        .filter(team=team)
        .order_by("name")[:MAX_TEMPLATES_PER_TEAM]
    )
