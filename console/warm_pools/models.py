from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from console.accounts.models.projects import Project
from console.ids import new_warm_pool_id
from console.keys.models import ApiKey
from console.sandbox_templates.models import Template, TemplateBuild


class WarmPoolState(models.TextChoices):
    ENABLED = "enabled"
    DISABLED = "disabled"
    DRAINING = "draining"
    DELETED = "deleted"


class CheckoutMode(models.TextChoices):
    PREFER = "prefer"
    REQUIRE = "require"
    BYPASS = "bypass"


class VersionPolicy(models.TextChoices):
    PINNED_BUILD = "pinned_build"
    TRACK_TAG = "track_tag"


class WarmPool(models.Model):
    """Started sandboxes of one template kept ready for instant checkout (docs/warm-pools.md).

    The pool's sandboxes are ordinary Sandbox rows whose `warm_pool` points here while
    they wait; a checkout clears it and the sandbox becomes the caller's."""

    public_id = models.CharField(max_length=32, unique=True, default=new_warm_pool_id)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="warm_pools")
    name = models.CharField(max_length=63)
    # As the caller named it, and the template its sandboxes are created from.
    template_ref = models.CharField(max_length=200)
    template = models.CharField(max_length=200)
    state = models.CharField(
        max_length=10, choices=WarmPoolState.choices, default=WarmPoolState.ENABLED
    )
    min_ready = models.PositiveIntegerField()
    max_ready = models.PositiveIntegerField()
    vcpus = models.PositiveIntegerField(default=2)
    memory_mb = models.PositiveIntegerField(default=512)
    disk_mb = models.PositiveIntegerField(null=True, blank=True)
    idle_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    stale_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    checkout_policy = models.CharField(
        max_length=8, choices=CheckoutMode.choices, default=CheckoutMode.PREFER
    )
    version_policy = models.CharField(
        max_length=12, choices=VersionPolicy.choices, default=VersionPolicy.PINNED_BUILD
    )
    # A custom template's row and the build the pool is pinned to (None: a builtin,
    # which has no builds); with track_tag, the tag whose moves roll the pool over
    # (docs/warm-pools.md, "Pinned or tracking a tag").
    custom_template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="warm_pools"
    )
    template_build = models.ForeignKey(
        TemplateBuild, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    track_tag = models.CharField(max_length=100, blank=True)
    # Bumped each time the pool moves to another build; what it ran before, and the
    # pool's totals when it moved (the rollout's counts are the totals since).
    rollout_generation = models.PositiveIntegerField(default=1)
    previous_template = models.CharField(max_length=200, blank=True)
    previous_template_build = models.ForeignKey(
        TemplateBuild, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rollout_base = models.JSONField(default=dict, blank=True)
    rollout_updated_at = models.DateTimeField(null=True, blank=True)
    # Sandboxes of an older generation the worker's last pass destroyed.
    released_last_pass = models.PositiveIntegerField(default=0)
    # Bumped when the template or size changes: sandboxes made for an older generation
    # are replaced, never checked out (console/warm_pools/filler.py).
    generation = models.PositiveIntegerField(default=1)
    labels = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Why the pool is below its target ("" when it is not): the contract's reasons.
    degraded_reason = models.CharField(max_length=40, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Totals since the pool was made: checkouts, fills that failed, sandboxes replaced
    # because they were stale, idle or no longer matched the pool.
    claimed_count = models.PositiveBigIntegerField(default=0)
    failed_count = models.PositiveBigIntegerField(default=0)
    expired_count = models.PositiveBigIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # The one worker filling the pool now, until when (console/warm_pools/filler.py).
    filler = models.CharField(max_length=96, blank=True)
    fill_lease_until = models.DateTimeField(null=True, blank=True)
    # No fill before this (back-off after failed fills).
    next_fill_at = models.DateTimeField(null=True, blank=True)
    # The last create that asked the pool for a sandbox (hit or miss): the idle clock.
    last_demand_at = models.DateTimeField(null=True, blank=True)
    created_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    enabled_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    drain_requested_at = models.DateTimeField(null=True, blank=True)
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=~Q(state="deleted"),
                name="console_warm_pool_unique_name",
            )
        ]
        indexes = [models.Index(fields=["project", "state"], name="console_warm_pool_state")]

    def __str__(self) -> str:
        return self.public_id
