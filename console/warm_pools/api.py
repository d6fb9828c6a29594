"""/v1/template-warm-pools (contract §4.5, docs/warm-pools.md): create, list, get,
update (scale), enable, disable, drain, reconcile, delete. The rules are in
console/warm_pools/pools.py; this module parses and shapes."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q, QuerySet
from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.errors import DomainError
from console.models import WarmPool, WarmPoolState
from console.sandbox_templates import refs
from console.warm_pools import pools
from console.warm_pools.shapes import PUBLIC_STATUSES, inventories, pool_to_dict, public_status
from console.warm_pools.templates import resolve_template

# Live pools are bounded per project (pools.MAX_POOLS_PER_PROJECT); deleted ones are
# listed only when asked for, at most this many.
MAX_LISTED = 1000


@api_key_required(WRITE)
def create_pool(request: ApiRequest) -> HttpResponse:
    pool = pools.create_pool(request.project, request.json, actor=Actor.of(request))
    return JsonResponse(pool_to_dict(pool), status=201)


@api_key_required(READ)
def list_pools(request: ApiRequest) -> HttpResponse:
    """Filters: template (the ref or the template it resolved to), state, label
    (KEY=VALUE, repeatable, all must match), status (the one-word public status)."""
    rows = _filtered(request)
    limit = query_int(request, "limit", 1000, 1, 1000)
    labels = _labels(request)
    found = [
        pool
        for pool in rows.order_by("created_at", "pk")[:MAX_LISTED]
        if all((pool.labels or {}).get(key) == value for key, value in labels)
    ]
    counts = inventories(found)
    status = request.GET.get("status")
    if status is not None and status not in PUBLIC_STATUSES:
        raise ApiError("invalid_request", f"status must be one of {', '.join(PUBLIC_STATUSES)}")
    items = [
        pool_to_dict(pool, counts[pool.pk])
        for pool in found
        if status is None or public_status(pool, counts[pool.pk]) == status
    ]
    return JsonResponse({"items": items[:limit]})


def _filtered(request: ApiRequest) -> QuerySet[WarmPool]:
    rows = WarmPool.objects.filter(project=request.project)
    state = request.GET.get("state")
    if state is None:
        rows = rows.exclude(state=WarmPoolState.DELETED)
    elif state in WarmPoolState.values:
        rows = rows.filter(state=state)
    else:
        raise ApiError("invalid_request", f"state must be one of {', '.join(WarmPoolState.values)}")
    if template := request.GET.get("template"):
        names = {template}
        match = Q(template_ref=template)
        try:  # `nullspace/base:latest` finds the pools of `base` too, `demo` those of demo
            found = refs.resolve(request.project.team, template)
            if found.template is not None:
                match |= Q(custom_template=found.template)
            else:
                names.add(resolve_template(request.project, template))
        except DomainError:
            pass
        rows = rows.filter(match | Q(template__in=names))
    return rows


def _labels(request: ApiRequest) -> list[tuple[str, str]]:
    pairs = []
    for label in request.GET.getlist("label"):
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise ApiError("invalid_request", f"label filter {label!r} must be KEY=VALUE")
        pairs.append((key, value))
    return pairs


@api_key_required(READ)
def get_pool(request: ApiRequest, pool_id: str) -> HttpResponse:
    return JsonResponse(pool_to_dict(pools.get_pool(request.project, pool_id)))


@api_key_required(WRITE)
def update_pool(request: ApiRequest, pool_id: str) -> HttpResponse:
    pool = pools.update_pool(
        pools.get_pool(request.project, pool_id), request.json, actor=Actor.of(request)
    )
    return JsonResponse(pool_to_dict(pool))


@api_key_required(WRITE)
def delete_pool(request: ApiRequest, pool_id: str) -> HttpResponse:
    pool = pools.delete_pool(pools.get_pool(request.project, pool_id), actor=Actor.of(request))
    return JsonResponse(pool_to_dict(pool))


def _action(change: Callable[..., WarmPool]) -> Callable[..., HttpResponse]:
    @api_key_required(WRITE)
    def view(request: ApiRequest, pool_id: str) -> HttpResponse:
        pool = change(pools.get_pool(request.project, pool_id), actor=Actor.of(request))
        return JsonResponse(pool_to_dict(pool))

    view.__name__ = f"{change.__name__}_view"
    wrapped: Callable[..., HttpResponse] = view
    return wrapped


_base = "template-warm-pools"
urlpatterns = [
    path(_base, methods(GET=list_pools, POST=create_pool), name="v1-warm-pools"),
    path(
        _base + "/<str:pool_id>",
        methods(GET=get_pool, PATCH=update_pool, DELETE=delete_pool),
        name="v1-warm-pool",
    ),
    *[
        path(
            f"{_base}/<str:pool_id>/{name}",
            methods(POST=_action(change)),
            name=f"v1-warm-pool-{name}",
        )
        for name, change in (
            ("enable", pools.enable_pool),
            ("disable", pools.disable_pool),
            ("drain", pools.drain_pool),
            ("reconcile", pools.reconcile_pool),
        )
    ],
]
