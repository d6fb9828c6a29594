"""Telling what follows a template's tags that one moved (docs/warm-pools.md, "Rollout"):
warm pools that track a tag roll over to its new build. Called by every change that
points a tag at another build (a build finishing, promote, tag assign)."""

from __future__ import annotations

from console.models import Template


def tags_moved(template: Template) -> None:
    """Queue the followers' move, in a job that commits with the caller's transaction."""
    from console.warm_pools import rollout  # the warm-pool domain builds on this one

    rollout.tags_moved(template)
