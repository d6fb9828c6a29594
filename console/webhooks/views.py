"""Webhooks in the console: list, create (the generated signing secret is rendered
once, into the response of the POST that made it, marked no-store), enable/disable,
delete, send a test event, and each webhook's delivery log with payloads and attempts.
Every change goes through console/webhooks/service.py, as /v1 does."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.access import TeamRequest, team_member_required
from console.actor import Actor
from console.errors import DomainError
from console.htmx import is_fragment_request, render_confirm, render_page
from console.models import DeliveryStatus, Operation, Role, Webhook
from console.webhooks import service
from console.webhooks.delivery import body_for
from console.webhooks.secrets import new_signing_secret

LIST = "console/webhooks/list.html"
DETAIL = "console/webhooks/detail.html"
PAGE_SIZE = 25
UNFINISHED = (DeliveryStatus.QUEUED, DeliveryStatus.IN_PROGRESS)


class WebhookForm(forms.Form):
    url = forms.CharField(
        max_length=2048,
        label="Endpoint URL",
        widget=forms.TextInput(
            attrs={"placeholder": "https://example.com/nullspace/lifecycle", "inputmode": "url"}
        ),
    )
    operations = forms.MultipleChoiceField(
        choices=[(op.value, op.label) for op in service.SUBSCRIBABLE],
        initial=[Operation.CREATE, Operation.DESTROY],
        widget=forms.CheckboxSelectMultiple,
        label="Events",
    )


def _list_url(request: TeamRequest) -> str:
    return reverse(
        "webhook-list",
        kwargs={"team_slug": request.team.slug, "project_slug": request.project.slug},
    )


def _webhook(request: TeamRequest, webhook_id: str) -> Webhook:
    return get_object_or_404(Webhook, project=request.project, public_id=webhook_id)


def _render_list(
    request: TeamRequest, form: WebhookForm | None = None, issued: dict[str, Any] | None = None
) -> HttpResponse:
    context = {
        "webhooks": request.project.webhooks.all(),
        "form": form or WebhookForm(),
        "issued": issued,
        "can_manage": request.membership.has_role(Role.MEMBER),
    }
    return render_page(request, LIST, context, partial="webhooks")


@require_GET
@team_member_required(Role.VIEWER)
def webhook_list(request: TeamRequest) -> HttpResponse:
    return _render_list(request)


@never_cache
@require_POST
@team_member_required(Role.MEMBER)
def webhook_create(request: TeamRequest) -> HttpResponse:
    form = WebhookForm(request.POST)
    if not form.is_valid():
        return _render_list(request, form=form)
    secret = new_signing_secret()
    try:
        webhook = service.create_webhook(
            request.project,
            url=form.cleaned_data["url"],
            operations=form.cleaned_data["operations"],
            signing_secret=secret,
            actor=Actor.of(request),
        )
    except DomainError as refused:
        on_url = (refused.details or {}).get("field") == "url"
        form.add_error("url" if on_url else None, refused.message)
        return _render_list(request, form=form)
    return _render_list(request, issued={"webhook": webhook, "secret": secret})


@require_POST
@team_member_required(Role.MEMBER)
def webhook_toggle(request: TeamRequest, webhook_id: str) -> HttpResponse:
    webhook = _webhook(request, webhook_id)
    service.update_webhook(webhook, {"enabled": not webhook.enabled}, actor=Actor.of(request))
    state = "enabled" if webhook.enabled else "disabled"
    messages.success(request, f"Webhook {webhook.public_id} {state}.")
    if not is_fragment_request(request):
        back = _detail_url(webhook) if request.POST.get("next") == "detail" else None
        return redirect(back or _list_url(request))
    return _render_list(request)


@require_http_methods(["GET", "POST"])
@team_member_required(Role.MEMBER)
def webhook_delete(request: TeamRequest, webhook_id: str) -> HttpResponse:
    webhook = _webhook(request, webhook_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Delete webhook {webhook.public_id}?",
            body=f"Deliveries to {webhook.url} stop, and its delivery log is deleted with it.",
            cancel=_list_url(request),
            button="Delete webhook",
        )
    service.delete_webhook(webhook, actor=Actor.of(request))
    messages.success(request, f"Webhook {webhook.public_id} deleted.")
    if not is_fragment_request(request):
        return redirect(_list_url(request))
    return _render_list(request)


@require_POST
@team_member_required(Role.MEMBER)
def webhook_test(request: TeamRequest, webhook_id: str) -> HttpResponse:
    webhook = _webhook(request, webhook_id)
    delivery = service.send_test_event(webhook)
    messages.success(request, f"Test event queued as {delivery.public_id}.")
    if not is_fragment_request(request):
        return redirect(_detail_url(webhook))
    return _render_detail(request, webhook)


def _detail_url(webhook: Webhook) -> str:
    project = webhook.project
    return reverse(
        "webhook-detail",
        kwargs={
            "team_slug": project.team.slug,
            "project_slug": project.slug,
            "webhook_id": webhook.public_id,
        },
    )


def _render_detail(request: TeamRequest, webhook: Webhook) -> HttpResponse:
    deliveries = webhook.deliveries.prefetch_related("attempts").order_by("-created_at", "-pk")
    page = Paginator(deliveries, PAGE_SIZE).get_page(request.GET.get("page"))
    # Each delivery with its body exactly as sent, indented for reading.
    rows = [(d, json.dumps(json.loads(body_for(d)), indent=2)) for d in page.object_list]
    pending = any(d.delivery_status in UNFINISHED for d in page.object_list)
    context = {
        "webhook": webhook,
        "page": page,
        "rows": rows,
        "pending": pending,
        "can_manage": request.membership.has_role(Role.MEMBER),
        "list_url": _list_url(request),
    }
    return render_page(request, DETAIL, context, partial="deliveries")


@require_GET
@team_member_required(Role.VIEWER)
def webhook_detail(request: TeamRequest, webhook_id: str) -> HttpResponse:
    return _render_detail(request, _webhook(request, webhook_id))


P = "t/<slug:team_slug>/p/<slug:project_slug>/webhooks/"
urlpatterns = [
    path(P, webhook_list, name="webhook-list"),
    path(P + "new/", webhook_create, name="webhook-create"),
    path(P + "<str:webhook_id>/", webhook_detail, name="webhook-detail"),
    path(P + "<str:webhook_id>/toggle/", webhook_toggle, name="webhook-toggle"),
    path(P + "<str:webhook_id>/delete/", webhook_delete, name="webhook-delete"),
    path(P + "<str:webhook_id>/test/", webhook_test, name="webhook-test"),
]
