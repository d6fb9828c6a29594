"""Preview links (grants) in the console: per project and per sandbox.

Create a signed link or a proxy target (the raw link or tokens are rendered once,
into the response of the POST that made them, marked no-store), list grants in
keyset pages with live counters and a usage chart, and revoke in one click. The
table does not poll: the page's live socket (console/live_ws.py) says when the
grants changed (created, revoked, counters written) and the table re-fetches its
page once. Every change goes through console/previews/service.py, as /v1 does.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from console.access import TeamRequest, team_member_required
from console.actor import Actor
from console.htmx import is_fragment_request, render_confirm, render_page
from console.models import AuditEvent, AuthMode, PreviewGrant, Project, Role, Sandbox
from console.paging import Keyset, console_page
from console.previews import service as previews

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
PAGE_SIZE = 25
KEYSET = Keyset("grant", "created_at")
SUGGESTED = 50  # live sandboxes offered in the form's datalist
SANDBOX_BULK = [f"sandbox__{name}" for name in ("envs", "metadata", "network", "runtime_state")]


class GrantForm(forms.Form):
    # Any live sandbox of the project by id (a <select> of 10,000 would not do); the
    # newest few are offered in a datalist.
    sandbox = forms.CharField(max_length=32)
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

    def __init__(self, *args, project: Project, scope: Sandbox | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.chosen: Sandbox | None = None
        if scope is not None:
            self.suggestions = [scope.public_id] if scope.is_live else []
        else:
            self.suggestions = _newest_live(project)
        self.fields["sandbox"].widget.attrs.update(
            list="grant-sandboxes", placeholder="sb_…", autocomplete="off"
        )
        if len(self.suggestions) == 1:
            self.fields["sandbox"].initial = self.suggestions[0]

    def clean_sandbox(self) -> str:
        public_id = self.cleaned_data["sandbox"].strip()
        sandbox = Sandbox.objects.filter(project=self.project, public_id=public_id).first()
        if sandbox is None or not sandbox.is_live:
            raise forms.ValidationError("Select a valid choice: a live sandbox of this project.")
        self.chosen = sandbox
        return public_id

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


def _scope(request: TeamRequest, sandbox_id: str | None) -> Sandbox | None:
    if sandbox_id is None:
        return None
    return get_object_or_404(Sandbox, project=request.project, public_id=sandbox_id)


def _grants(request: TeamRequest, sandbox: Sandbox | None):
    # Only the sandbox's id is shown: leave its JSON columns in the database.
    rows = (
        PreviewGrant.objects.filter(project=request.project)
        .select_related("sandbox")
        .defer(*SANDBOX_BULK)
    )
    return rows.filter(sandbox=sandbox) if sandbox else rows


def _newest_live(project: Project) -> list[str]:
    rows = Sandbox.objects.filter(project=project).visible().live().order_by("-created_at", "-id")
    return list(rows.values_list("public_id", flat=True)[:SUGGESTED])


def _active_count(request: TeamRequest, sandbox: Sandbox | None) -> int:
    """Exact, from the partial indexes of open grants (only those can be active)."""
    rows = PreviewGrant.objects.filter(
        project=request.project,
        revoked_at__isnull=True,
        disabled_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    return (rows.filter(sandbox=sandbox) if sandbox else rows).count()


def _urls(request: TeamRequest, sandbox: Sandbox | None) -> dict[str, str]:
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


def _scope_param(sandbox: Sandbox | None) -> dict[str, str]:
    return {"scope": "sandbox"} if sandbox else {}


def _without(query: str, *names: str) -> str:
    rest = QueryDict(query, mutable=True)
    for name in names:
        rest.pop(name, None)
    return rest.urlencode()


def _live_socket(request: TeamRequest, sandbox: Sandbox | None) -> str:
    return _urls(request, sandbox)["list"] + "live/ws"


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


def _context(request: TeamRequest, sandbox: Sandbox | None, **extra) -> dict:
    previews.flush_accounting()
    page, query = console_page(request, _grants(request, sandbox), KEYSET, size=PAGE_SIZE)
    query = _without(query, "next", "scope")  # a revoke's own parameters
    here = {k: request.GET[k] for k in ("after", "before") if request.GET.get(k)}
    can_manage = request.membership.has_role(Role.MEMBER)
    # No live sandbox (no suggestion) means nothing to grant: the form is left out.
    form = GrantForm(project=request.project, scope=sandbox) if can_manage else None
    chart = _chart(page.items)
    urls = _urls(request, sandbox)
    context = {
        "scope_sandbox": sandbox,
        "page": page,
        "query": query,
        # The table re-fetches the page it shows, and revoking keeps the reader there.
        "here": f"?{urlencode(here)}" if here else "",
        "grant_base": _urls(request, None)["list"],
        "revoke_query": "?" + urlencode({**here, "next": urls["list"], **_scope_param(sandbox)}),
        "sandbox_base": reverse(
            "sandbox-list",
            kwargs={"team_slug": request.team.slug, "project_slug": request.project.slug},
        ),
        "live_socket": _live_socket(request, sandbox),
        "chart": chart,
        "chart_height": 12 + 22 * len(chart),
        "urls": urls,
        "can_manage": can_manage,
        "form": form if form is not None and form.suggestions else None,
        "active_count": _active_count(request, sandbox),
        "token_header": TOKEN_HEADER,
    }
    context.update(extra)
    return context


@require_GET
@team_member_required(Role.VIEWER)
def grant_list(request: TeamRequest, sandbox_id: str | None = None) -> HttpResponse:
    sandbox = _scope(request, sandbox_id)
    return render_page(request, TEMPLATE, _context(request, sandbox), partial="grant-table")


@require_GET
@team_member_required(Role.VIEWER)
def grant_table(request: TeamRequest, sandbox_id: str | None = None) -> HttpResponse:
    """The polled fragment: table and chart with fresh counters."""
    sandbox = _scope(request, sandbox_id)
    return render(request, f"{TEMPLATE}#grant-table", _context(request, sandbox))


@never_cache
@require_POST
@team_member_required(Role.MEMBER)
def grant_create(request: TeamRequest, sandbox_id: str | None = None) -> HttpResponse:
    scope = _scope(request, sandbox_id)
    form = GrantForm(request.POST, project=request.project, scope=scope)
    if not form.is_valid() or (scope is not None and form.chosen != scope):
        if form.is_valid():
            form.add_error("sandbox", "This page creates links for its own sandbox only.")
        # 200, as every console form: htmx 2 does not swap a 4xx, so the errors would not show.
        context = _context(request, scope)
        context["form"] = form
        return render_page(request, TEMPLATE, context, partial="grant-create")
    data = form.cleaned_data
    sandbox = form.chosen
    assert sandbox is not None  # a valid form chose one (GrantForm.clean_sandbox)
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
            actor=Actor.of(request),
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
def grant_revoke(request: TeamRequest, grant_id: str) -> HttpResponse:
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
        previews.revoke_grant(grant, actor=Actor.of(request))
        messages.success(request, f"Preview {grant.public_id} revoked.")
    if not is_fragment_request(request):
        return redirect(back)
    scope = grant.sandbox if request.GET.get("scope") == "sandbox" else None
    return render(request, f"{TEMPLATE}#grant-table", _context(request, scope))


@require_GET
@team_member_required(Role.VIEWER)
def grant_detail(request: TeamRequest, grant_id: str) -> HttpResponse:
    """One grant: its settings, counters and access history from the audit log
    (created, first use with client IP and user agent, revoked, expired)."""
    grant = get_object_or_404(
        PreviewGrant.objects.select_related("sandbox", "created_by"),
        project=request.project,
        public_id=grant_id,
    )
    history = AuditEvent.objects.filter(
        team=request.team, target_type="preview_grant", target_id=grant.public_id
    ).order_by("created_at", "pk")[:100]
    context = {"grant": grant, "history": history, "urls": _urls(request, None)}
    return render_page(request, "console/previews/detail.html", context)


P = "t/<slug:team_slug>/p/<slug:project_slug>/previews/"
S = "t/<slug:team_slug>/p/<slug:project_slug>/sandboxes/<str:sandbox_id>/previews/"
urlpatterns = [
    path(P, grant_list, name="grant-list"),
    path(P + "table/", grant_table, name="grant-table"),
    path(P + "new/", grant_create, name="grant-create"),
    path(P + "<str:grant_id>/", grant_detail, name="grant-detail"),
    path(P + "<str:grant_id>/revoke/", grant_revoke, name="grant-revoke"),
    path(S, grant_list, name="grant-sandbox-list"),
    path(S + "table/", grant_table, name="grant-sandbox-table"),
    path(S + "new/", grant_create, name="grant-sandbox-create"),
]
