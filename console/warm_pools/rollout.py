"""A pool moving to another build of its template (docs/warm-pools.md, "Rollout").

A pool that tracks a tag follows it: when the tag moves (a build finishes with it,
`promote`, `tag assign`), the templates domain calls `tags_moved`, which queues
`warm_pools.follow_tags`; that job pins every pool tracking a moved tag to the tag's
build. Moving is the same step as an update of the pool's template: a new `generation`,
so the worker replaces the old build's ready sandboxes and fills with the new one, and
a checkout, which takes only sandboxes of the pool's current generation, never hands
out an old-build sandbox once the move is recorded. Checked-out sandboxes are their
users' and are not touched.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from console.audit import service as audit
from console.jobs import enqueue
from console.models import Template, TemplateBuild, VersionPolicy, WarmPool, WarmPoolState
from console.warm_pools import live
from console.warm_pools.templates import custom_pin, tagged_build

FOLLOW_TAGS = "warm_pools.follow_tags"


def tags_moved(template: Template) -> None:
    """Called by the templates domain whenever a tag of `template` points at another
    build; the pools following it move in a job that commits with the caller."""
    enqueue(FOLLOW_TAGS, {"template": template.pk}, max_attempts=5)


def follow_tags(template_pk: int) -> None:
    """Move each pool tracking a tag of the template to where its tag points now."""
    following = WarmPool.objects.filter(
        custom_template_id=template_pk, version_policy=VersionPolicy.TRACK_TAG
    ).exclude(state=WarmPoolState.DELETED)
    for pool in following.select_related("project__team", "custom_template__team"):
        follow(pool)


def follow(pool: WarmPool) -> bool:
    """Move the pool to the build its tag points at now. True when it moved (a tag
    removed leaves the pool on the build it has)."""
    template = pool.custom_template
    if template is None or not pool.track_tag:
        return False
    build = tagged_build(template, pool.track_tag)
    if build is None or build.pk == pool.template_build_id:
        return False
    chosen = custom_pin(template, build)
    fields = moved(pool, chosen.template, build)
    with transaction.atomic():
        # Conditional on the build it had: two moves at once record one rollout each.
        rows = WarmPool.objects.filter(
            pk=pool.pk, template_build_id=pool.template_build_id
        ).exclude(state=WarmPoolState.DELETED)
        changed = rows.update(
            template=chosen.template, template_build=build, updated_at=timezone.now(), **fields
        )
        if not changed:
            return False
        audit.record(
            "warm_pool.rolled_out",
            team=pool.project.team,
            actor_label="system",
            target_type="warm_pool",
            target_id=pool.public_id,
            name=pool.name,
            project=pool.project.public_id,
            track_tag=pool.track_tag,
            build=build.public_id,
            previous_build=pool.template_build.public_id if pool.template_build else None,
        )
        from console.warm_pools.jobs import ask_filler

        ask_filler(pool.pk)
    live.pools_changed(pool.project, [pool.public_id])
    return True


def moved(pool: WarmPool, template: str, build: TemplateBuild | None) -> dict[str, Any]:
    """The fields of a pool that now makes `template` (its build `build`): a new
    generation, and when the build is another one, a new rollout that remembers the
    old one and the totals its counts start from."""
    if template == pool.template and build == pool.template_build:
        return {}
    fields: dict[str, Any] = {"generation": F("generation") + 1}
    if (build.pk if build else None) != pool.template_build_id:
        fields.update(
            rollout_generation=F("rollout_generation") + 1,
            previous_template=pool.template,
            previous_template_build=pool.template_build,
            rollout_base={
                "claimed": pool.claimed_count,
                "failed": pool.failed_count,
                "expired": pool.expired_count,
            },
            rollout_updated_at=timezone.now(),
        )
    return fields
