"""The team audit log: filtered by action, actor prefix and date range, in keyset pages."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import path

from console.access import TeamRequest, team_member_required
from console.accounts.forms import AuditFilterForm
from console.audit.service import ACTIONS
from console.htmx import render_page
from console.models import AuditEvent, Role
from console.paging import Keyset, console_page

PAGE_SIZE = 50
KEYSET = Keyset("audit", "created_at")


@team_member_required(Role.VIEWER)
def audit_list(request: TeamRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET, actions=ACTIONS)
    rows = form.filter(AuditEvent.objects.filter(team=request.team))
    page, query = console_page(request, rows, KEYSET, size=PAGE_SIZE)
    context = {"form": form, "page": page, "query": query}
    return render_page(request, "console/audit/list.html", context, partial="audit-table")


urlpatterns = [path("t/<slug:team_slug>/audit/", audit_list, name="audit-list")]
