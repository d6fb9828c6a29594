"""The team audit log: filterable by action, actor and date range, paginated."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import path

from console.access import team_member_required
from console.forms import AuditFilterForm
from console.htmx import render_page
from console.models import AuditEvent, Role

PAGE_SIZE = 50


@team_member_required(Role.VIEWER)
def audit_list(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.filter(team=request.team)
    actions = list(events.order_by("action").values_list("action", flat=True).distinct())
    form = AuditFilterForm(request.GET or None, actions=actions)
    page = Paginator(form.filter(events).select_related("actor"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render_page(request, "console/audit/list.html", context, partial="audit-table")


urlpatterns = [path("t/<slug:team_slug>/audit/", audit_list, name="audit-list")]
