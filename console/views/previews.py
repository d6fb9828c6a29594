"""Preview links (grants) in the console: per project and per sandbox.

Create a signed link or a proxy target (the raw link or tokens are rendered once,
into the response of the POST that made them, marked no-store), list grants with
live counters (the table fragment polls every 2 s) and a usage chart, and revoke
in one click. Every change goes through console/previews.py, as /v1 does.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from console import previews
from console.access import team_member_required
from console.htmx import is_fragment_request, render_confirm, render_page
from console.models import AuthMode, PreviewGrant, Role, Sandbox

TEMPLATE = "console/previews/list.html"
TOKEN_HEADER = "x-nullspace-preview-proxy-token"
EXPIRY_CHOICES = [
    ("900", "15 minutes"),
    ("3600", "1 hour"),
    ("28800", "8 hours"),
    ("86400", "24 hours"),
]
KIND_CHOICES = [("link", "Signed link (browser)"), ("proxy", "Proxy target (your reverse proxy)")]
TRANSPORT_CHOICES = [("http", "HTTP"), ("websocket", "WebSocket")]


class GrantForm(forms.Form):
    sandbox = forms.ChoiceField(choices=())
    port = forms.IntegerField(min_value=1, max_value=65535, initial=3000)
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="3600")
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="link", widget=forms.RadioSelect)
    transports = forms.MultipleChoiceField(
        choices=TRANSPORT_CHOICES,
        initial=["http", "websocket"],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Proxy targets only: which transports the tokens open.",
    )

    def __init__(self, *args, sandboxes: list[Sandbox], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sandbox"].choices = [(sb.public_id, sb.public_id) for sb in sandboxes]
        if len(sandboxes) == 1:
            self.fields["sandbox"].initial = sandboxes[0].public_id

    def clean_port(self) -> int:
        try:
            return previews.check_port(self.cleaned_data["port"])
        except previews.PreviewRefused as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == "proxy" and not cleaned.get("transports"):
            self.add_error("transports", "Choose at least one transport for a proxy target.")
        return cleaned


def _scope(request: HttpRequest, sandbox_id: str | None) -> Sandbox | None:
    if sandbox_id is None:
        return None
    return get_object_or_404(Sandbox, project=request.project, public_id=sandbox_id)


def _grants(request: HttpRequest, sandbox: Sandbox | None):
    rows = PreviewGrant.objects.filter(project=request.project).select_related(
        "sandbox", "created_by", "created_by_key"
    )
    return rows.filter(sandbox=sandbox) if sandbox else rows


def _grantable_sandboxes(request: HttpRequest, sandbox: Sandbox | None) -> list[Sandbox]:
    if sandbox is not None:
        return [sandbox] if sandbox.is_live else []
    return list(
        Sandbox.objects.filter(project=request.project).live().order_by("-created_at")[:200]
    )


def _urls(request: HttpRequest, sandbox: Sandbox | None) -> dict[str, str]:
    kwargs = {"team_slug": request.team.slug, "project_slug": request.project.slug}
    if sandbox is None:
        return {
            "list": reverse("grant-list", kwargs=kwargs),
            "table": reverse("grant-table", kwargs=kwargs),
            "create": reverse("grant-create", kwargs=kwargs),
        }
    kwargs["sandbox_id"] = sandbox.public_id
    return {
        "list": reverse("grant-sandbox-list", kwargs=kwargs),
        "table": reverse("grant-sandbox-table", kwargs=kwargs),
        "create": reverse("grant-sandbox-create", kwargs=kwargs),
    }


def _chart(grants: list[PreviewGrant]) -> list[dict]:
    """Bars for the usage chart: requests and bytes out per grant, scaled to the largest."""
    rows = [g for g in grants if g.use_count or g.bytes_out_count][:10]
    top_uses = max((g.use_count for g in rows), default=0) or 1
    top_bytes = max((g.bytes_out_count for g in rows), default=0) or 1
    return [
        {
            "grant": g,
            "y": 6 + i * 22,
            "uses_width": round(180 * g.use_count / top_uses),
            "bytes_width": round(180 * g.bytes_out_count / top_bytes),
        }
        for i, g in enumerate(rows)
    ]


def _context(request: HttpRequest, sandbox: Sandbox | None, **extra) -> dict:
    previews.flush_accounting()
    grants = list(_grants(request, sandbox)[:200])
    sandboxes = _grantable_sandboxes(request, sandbox)
    can_manage = request.membership.has_role(Role.MEMBER)
    chart = _chart(grants)
    context = {
        "scope_sandbox": sandbox,
        "grants": grants,
        "chart": chart,
        "chart_height": 12 + 22 * len(chart),
        "urls": _urls(request, sandbox),
        "can_manage": can_manage,
        "form": GrantForm(sandboxes=sandboxes) if can_manage and sandboxes else None,
        "active_count": sum(1 for g in grants if g.status == "active"),
        "token_header": TOKEN_HEADER,
    }
    context.update(extra)
    return context


@require_GET
@team_member_required(Role.VIEWER)
def grant_list(request: HttpRequest, sandbox_id: str | None = None) -> HttpResponse:
    sandbox = _scope(request, sandbox_id)
    return render_page(request, TEMPLATE, _context(request, sandbox), partial="grant-table")


@require_GET
@team_member_required(Role.VIEWER)
def grant_table(request: HttpRequest, sandbox_id: str | None = None) -> HttpResponse:
    """The polled fragment: table and chart with fresh counters."""
    sandbox = _scope(request, sandbox_id)
    return render(request, f"{TEMPLATE}#grant-table", _context(request, sandbox))


@never_cache
@require_POST
@team_member_required(Role.MEMBER)
def grant_create(request: HttpRequest, sandbox_id: str | None = None) -> HttpResponse:
    scope = _scope(request, sandbox_id)
    sandboxes = _grantable_sandboxes(request, scope)
    form = GrantForm(request.POST, sandboxes=sandboxes)
    if not form.is_valid():
        # 200, as every console form: htmx 2 does not swap a 4xx, so the errors would not show.
        context = _context(request, scope)
        context["form"] = form
        return render_page(request, TEMPLATE, context, partial="grant-create")
    data = form.cleaned_data
    sandbox = next(sb for sb in sandboxes if sb.public_id == data["sandbox"])
    proxy = data["kind"] == "proxy"
    kinds = [previews.HTTP_PORT, previews.WEBSOCKET_PORT]
    if proxy:
        kinds = [k for k in kinds if previews.TRANSPORT_OF[k] in data["transports"]]
    try:
        grant, raw = previews.create_grant(
            sandbox,
            data["port"],
            auth_mode=AuthMode.PROXY if proxy else AuthMode.DIRECT,
            token_kinds=kinds,
            expires_in_seconds=int(data["expires"]),
            created_by=request.user,
        )
    except previews.PreviewRefused as exc:
        form.add_error(None, str(exc))
        context = _context(request, scope)
        context["form"] = form
        return render_page(request, TEMPLATE, context, partial="grant-create")
    http_url, websocket_url = previews.preview_urls(
        sandbox, grant.port, raw, auth_mode=grant.auth_mode
    )
    issued = {
        "grant": grant,
        "proxy": proxy,
        "http_url": http_url if previews.HTTP_PORT in raw else "",
        "websocket_url": websocket_url if previews.WEBSOCKET_PORT in raw else "",
        "http_token": raw.get(previews.HTTP_PORT, ""),
        "websocket_token": raw.get(previews.WEBSOCKET_PORT, ""),
        "upstream_host": previews.preview_host(sandbox, grant.port),
    }
    messages.success(request, f"Preview {grant.public_id} created for port {grant.port}.")
    context = _context(request, scope, issued=issued)
    response = render_page(request, TEMPLATE, context, partial="grant-create")
    return trigger_client_event(response, "grant-created")  # the table shows it at once


@require_http_methods(["GET", "POST"])
@team_member_required(Role.MEMBER)
def grant_revoke(request: HttpRequest, grant_id: str) -> HttpResponse:
    grant = get_object_or_404(
        PreviewGrant.objects.select_related("sandbox", "sandbox__project__team"),
        project=request.project,
        public_id=grant_id,
    )
    back = request.GET.get("next", "")
    # Only a path on this site: "//evil.example" also starts with "/".
    if not url_has_allowed_host_and_scheme(back, allowed_hosts=None) or not back.startswith("/"):
        back = _urls(request, None)["list"]
    if request.method == "GET":
        return render_confirm(
            request,
            title=f"Revoke preview {grant.public_id}?",
            body=f"Port {grant.port} of {grant.sandbox.public_id}: the link, its cookies and "
            "open WebSockets stop working at once.",
            cancel=back,
            button="Revoke",
        )
    if grant.revoked_at is None:
        previews.revoke_grant(grant, by=request.user)
        messages.success(request, f"Preview {grant.public_id} revoked.")
    if not is_fragment_request(request):
        return redirect(back)
    scope = grant.sandbox if request.GET.get("scope") == "sandbox" else None
    return render(request, f"{TEMPLATE}#grant-table", _context(request, scope))


P = "t/<slug:team_slug>/p/<slug:project_slug>/previews/"
S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/previews/"
urlpatterns = [
    path(P, grant_list, name="grant-list"),
    path(P + "table/", grant_table, name="grant-table"),
    path(P + "new/", grant_create, name="grant-create"),
    path(P + "<str:grant_id>/revoke/", grant_revoke, name="grant-revoke"),
    path(S, grant_list, name="grant-sandbox-list"),
    path(S + "table/", grant_table, name="grant-sandbox-table"),
    path(S + "new/", grant_create, name="grant-sandbox-create"),
]
