"""The render helpers for pages with htmx fragments and for confirmation pages, and messages
carried to htmx as events."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.http import HttpResponseClientRedirect


def is_fragment_request(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


def render_page(
    request: HttpRequest,
    template: str,
    context: dict | None = None,
    *,
    partial: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render `template#partial` for an htmx request and the whole page otherwise."""
    name = f"{template}#{partial}" if partial and is_fragment_request(request) else template
    response = render(request, name, context or {}, status=status)
    response.headers["Vary"] = "HX-Request"
    return response


def render_confirm(
    request: HttpRequest, *, title: str, body: str, cancel: str, button: str, blocked: str = ""
) -> HttpResponse:
    """The no-JavaScript path of an hx-confirm button: a page whose form POSTs back to this
    URL (query string included), or only explains why not when `blocked` says so."""
    context = {
        "title": title,
        "body": body,
        "cancel": cancel,
        "button": button,
        "blocked": blocked,
        "action": request.get_full_path(),
    }
    return render(request, "console/confirm_delete.html", context)


def redirect_or_client_redirect(request: HttpRequest, url: str) -> HttpResponse:
    """Land on another page: HX-Redirect (a full load) for htmx, a 302 otherwise."""
    if is_fragment_request(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


class HtmxMessagesMiddleware:
    """Turn Django messages into an HX-Trigger `messages` event on htmx responses."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_fragment_request(request) or 300 <= response.status_code < 400:
            return response
        if "HX-Redirect" in response.headers or "HX-Location" in response.headers:
            return response
        pending = [
            {"level": message.level_tag, "text": str(message)}
            for message in messages.get_messages(request)
        ]
        if not pending:
            return response
        trigger = {}
        if "HX-Trigger" in response.headers:
            try:
                trigger = json.loads(response.headers["HX-Trigger"])
            except ValueError:
                trigger = {response.headers["HX-Trigger"]: None}
        trigger["messages"] = pending
        response.headers["HX-Trigger"] = json.dumps(trigger)
        return response
