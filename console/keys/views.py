"""Project API keys: list, create, revoke, rotate.

A new raw key is rendered once, into the response of the POST that made it (the
`api-keys` fragment for htmx, the whole page otherwise), marked no-store. It is
never put in the session, in messages or in a redirect.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console.access import TeamRequest, team_member_required
from console.accounts.forms import ApiKeyForm
from console.actor import Actor
from console.htmx import is_fragment_request, render_confirm, render_page
from console.keys.service import (
    IssuedKey,
    KeyLimitReached,
    create_api_key,
    revoke_api_key,
    rotate_api_key,
)
from console.models import ApiKey, Role
from console.paging import Keyset, console_page

TEMPLATE = "console/keys/list.html"
PAGE_SIZE = 25
KEYSET = Keyset("key", "created_at")


def _render(request: TeamRequest, form: ApiKeyForm | None = None, issued: IssuedKey | None = None):
    """One page of keys (an action re-renders the page it was taken on)."""
    keys = request.project.api_keys.select_related("created_by")
    page, query = console_page(request, keys, KEYSET, size=PAGE_SIZE)
    here = {k: request.GET[k] for k in ("after", "before") if request.GET.get(k)}
    context = {
        "page": page,
        "query": query,
        "here": f"?{urlencode(here)}" if here else "",
        # Row URLs are built by appending to this prefix, not by a {% url %} per row.
        "key_base": _list_url(request),
        "form": form or ApiKeyForm(),
        "issued": issued,
        "can_manage": request.membership.has_role(Role.MEMBER),
    }
    return render_page(request, TEMPLATE, context, partial="api-keys")


def _key(request: TeamRequest, key_id: str) -> ApiKey:
    return get_object_or_404(ApiKey, project=request.project, public_id=key_id)


def _list_url(request: TeamRequest) -> str:
    return reverse(
        "apikey-list", kwargs={"team_slug": request.team.slug, "project_slug": request.project.slug}
    )


@team_member_required(Role.VIEWER)
def apikey_list(request: TeamRequest) -> HttpResponse:
    return _render(request)


@never_cache
@team_member_required(Role.MEMBER)
@require_POST
def apikey_create(request: TeamRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render(request, form=form)
    try:
        issued = create_api_key(
            request.project,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.expires_at(),
            actor=Actor.of(request),
        )
    except KeyLimitReached as exc:
        form.add_error(None, str(exc))
        return _render(request, form=form)
    return _render(request, issued=issued)


@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def apikey_revoke(request: TeamRequest, key_id: str) -> HttpResponse:
    key = _key(request, key_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Revoke API key {key.name}?",
            body=f"Key {key.prefix}… stops working at once. It stays listed as revoked.",
            cancel=_list_url(request),
            button="Revoke key",
        )
    if revoke_api_key(key, actor=Actor.of(request)):
        messages.success(request, f"API key {key.name} revoked.")
    if not is_fragment_request(request):
        return redirect(_list_url(request))
    return _render(request)


@never_cache
@team_member_required(Role.MEMBER)
@require_http_methods(["GET", "POST"])
def apikey_rotate(request: TeamRequest, key_id: str) -> HttpResponse:
    key = _key(request, key_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Rotate API key {key.name}?",
            body=f"A new secret replaces {key.prefix}…, which stops working at once.",
            cancel=_list_url(request),
            button="Rotate key",
        )
    if not key.is_active:
        messages.error(request, "Only an active key can be rotated.")
        return _render(request) if is_fragment_request(request) else redirect(_list_url(request))
    issued = rotate_api_key(key, actor=Actor.of(request))
    return _render(request, issued=issued)


P = "t/<slug:team_slug>/p/<slug:project_slug>/keys/"
urlpatterns = [
    path(P, apikey_list, name="apikey-list"),
    path(P + "new/", apikey_create, name="apikey-create"),
    path(P + "<str:key_id>/revoke/", apikey_revoke, name="apikey-revoke"),
    path(P + "<str:key_id>/rotate/", apikey_rotate, name="apikey-rotate"),
]
