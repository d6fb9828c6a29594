"""/v1/lifecycle/webhooks: CRUD and the delivery log (docs/webhooks.md, docs/api.md)."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods, query_int
from console.api.errors import ApiError
from console.models import Delivery
from console.webhooks import service

MAX_PAGE = 200
REQUIRED = ("url", "operations", "signing_secret")


@api_key_required(WRITE)
def create_webhook(request: ApiRequest) -> HttpResponse:
    body = request.json
    missing = [name for name in REQUIRED if name not in body]
    if missing:
        raise ApiError("invalid_request", f"Missing field(s): {', '.join(missing)}")
    unknown = sorted(set(body) - set(service.UPDATABLE))
    if unknown:
        raise ApiError("invalid_request", f"Unknown field(s): {', '.join(unknown)}")
    webhook = service.create_webhook(
        request.project,
        url=body["url"],
        operations=body["operations"],
        signing_secret=body["signing_secret"],
        enabled=body.get("enabled", True),
        actor=Actor.of(request),
    )
    return JsonResponse(service.webhook_to_dict(webhook), status=201)


@api_key_required(READ)
def list_webhooks(request: ApiRequest) -> HttpResponse:
    hooks = request.project.webhooks.all()
    return JsonResponse([service.webhook_to_dict(hook) for hook in hooks], safe=False)


@api_key_required(READ)
def get_webhook(request: ApiRequest, webhook_id: str) -> HttpResponse:
    return JsonResponse(service.webhook_to_dict(service.get_webhook(request.project, webhook_id)))


@api_key_required(WRITE)
def update_webhook(request: ApiRequest, webhook_id: str) -> HttpResponse:
    webhook = service.get_webhook(request.project, webhook_id)
    webhook = service.update_webhook(webhook, request.json, actor=Actor.of(request))
    return JsonResponse(service.webhook_to_dict(webhook))


@api_key_required(WRITE)
def delete_webhook(request: ApiRequest, webhook_id: str) -> HttpResponse:
    webhook = service.get_webhook(request.project, webhook_id)
    service.delete_webhook(webhook, actor=Actor.of(request))
    return HttpResponse(status=204)


@api_key_required(READ)
def list_deliveries(request: ApiRequest, webhook_id: str) -> HttpResponse:
    webhook = service.get_webhook(request.project, webhook_id)
    offset = query_int(request, "offset", 0, 0, 10**9)
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    rows = Delivery.objects.filter(webhook=webhook).select_related("webhook")
    page = rows.order_by("-created_at", "-pk")[offset : offset + limit]
    return JsonResponse([service.delivery_to_dict(d) for d in page], safe=False)


@api_key_required(READ)
def get_delivery(request: ApiRequest, webhook_id: str, delivery_id: str) -> HttpResponse:
    webhook = service.get_webhook(request.project, webhook_id)
    return JsonResponse(service.delivery_detail(service.get_delivery(webhook, delivery_id)))


_base = "lifecycle/webhooks"
urlpatterns = [
    path(_base, methods(GET=list_webhooks, POST=create_webhook), name="v1-webhooks"),
    path(
        _base + "/<str:webhook_id>",
        methods(GET=get_webhook, PATCH=update_webhook, DELETE=delete_webhook),
        name="v1-webhook",
    ),
    path(
        _base + "/<str:webhook_id>/deliveries",
        methods(GET=list_deliveries),
        name="v1-webhook-deliveries",
    ),
    path(
        _base + "/<str:webhook_id>/deliveries/<str:delivery_id>",
        methods(GET=get_delivery),
        name="v1-webhook-delivery",
    ),
]
