"""Team members and invitation links: list, change role, remove or leave, invite, accept."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console.access import TeamRequest, require_role, team_member_required
from console.accounts.forms import InvitationForm, MemberRoleForm
from console.accounts.members import (
    MembershipError,
    accept_invitation,
    change_role,
    create_invitation,
    find_invitation,
    remove_member,
    revoke_invitation,
)
from console.actor import Actor
from console.audit.service import record
from console.htmx import (
    is_fragment_request,
    redirect_or_client_redirect,
    render_confirm,
    render_page,
)
from console.models import Invitation, Membership, Role
from console.paging import Keyset, console_page

TEMPLATE = "console/members/list.html"
PAGE_SIZE = 50
KEYSET = Keyset("member", "created_at")


def _context(request: TeamRequest, **extra) -> dict:
    team = request.team
    # Oldest member first: the team's founders lead the list.
    page, query = console_page(
        request, team.memberships.select_related("user"), KEYSET, size=PAGE_SIZE, ascending=True
    )
    return {
        "page": page,
        "query": query,
        "member_base": reverse("member-list", kwargs={"team_slug": team.slug}),
        "invitations": team.invitations.select_related("created_by").filter(
            accepted_at__isnull=True, revoked_at__isnull=True
        ),
        "invitation_form": InvitationForm(),
        "is_owner": request.membership.has_role(Role.OWNER),
        **extra,
    }


def _membership(request: TeamRequest, username: str) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "team"),
        team=request.team,
        user__username=username,
    )


@team_member_required(Role.VIEWER)
def member_list(request: TeamRequest) -> HttpResponse:
    return render(request, TEMPLATE, _context(request))


@team_member_required(Role.OWNER)
@require_POST
def member_role(request: TeamRequest, username: str) -> HttpResponse:
    membership = _membership(request, username)
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        old_role = membership.role
        try:
            change_role(membership, form.cleaned_data["role"])
        except MembershipError as error:
            messages.error(request, str(error))
            membership.refresh_from_db()
        else:
            if old_role != membership.role:
                record(
                    "member.role_change",
                    team=request.team,
                    actor=Actor.of(request),
                    target_type="user",
                    target_id=username,
                    old_role=old_role,
                    new_role=membership.role,
                )
                messages.success(
                    request, f"{username} is now {membership.get_role_display().lower()}."
                )
    if not is_fragment_request(request):
        return redirect("member-list", team_slug=request.team.slug)
    return render_page(
        request, TEMPLATE, _context(request, membership=membership), partial="member-row"
    )


@team_member_required(Role.VIEWER)
@require_http_methods(["GET", "POST"])
def member_remove(request: TeamRequest, username: str) -> HttpResponse:
    membership = _membership(request, username)
    leaving = membership.user_id == request.user.pk
    if not leaving:
        require_role(request, Role.OWNER)  # anyone may leave; only owners remove others
    team_url = reverse("member-list", kwargs={"team_slug": request.team.slug})
    if request.method == "GET":
        return render_confirm(
            request,
            title="Leave this team?" if leaving else f"Remove {username}?",
            body=f"{'You lose' if leaving else 'They lose'} access to every project of "
            f"{request.team.name}.",
            cancel=team_url,
            button="Leave team" if leaving else "Remove",
        )
    try:
        remove_member(membership)
    except MembershipError as error:
        messages.error(request, str(error))
        return redirect_or_client_redirect(request, team_url)
    record(
        "member.leave" if leaving else "member.remove",
        team=request.team,
        actor=Actor.of(request),
        target_type="user",
        target_id=username,
        role=membership.role,
    )
    messages.success(
        request, f"You left {request.team.name}." if leaving else f"{username} was removed."
    )
    return redirect_or_client_redirect(request, reverse("home") if leaving else team_url)


@never_cache
@team_member_required(Role.OWNER)
@require_POST
def invitation_create(request: TeamRequest) -> HttpResponse:
    form = InvitationForm(request.POST)
    new_link = None
    if form.is_valid():
        issued = create_invitation(
            request.team,
            role=form.cleaned_data["role"],
            email=form.cleaned_data["email"],
            actor=Actor.of(request),
            days=form.cleaned_data["expires_in_days"],
        )
        record(
            "invitation.create",
            team=request.team,
            actor=Actor.of(request),
            target_type="invitation",
            target_id=issued.invitation.public_id,
            role=issued.invitation.role,
            email=issued.invitation.email,
        )
        # The raw link is rendered into this response only: never stored, never in messages.
        new_link = request.build_absolute_uri(
            reverse("invitation-accept") + "?token=" + issued.token
        )
        form = InvitationForm()
    context = _context(request, invitation_form=form, new_link=new_link)
    return render_page(request, TEMPLATE, context, partial="invitations")


@team_member_required(Role.OWNER)
@require_http_methods(["GET", "POST"])
def invitation_revoke(request: TeamRequest, invitation_id: str) -> HttpResponse:
    invitation = get_object_or_404(Invitation, team=request.team, public_id=invitation_id)
    if request.method == "GET":
        return render_confirm(
            request,
            title="Revoke this invitation link?",
            body="The link stops working at once.",
            cancel=reverse("member-list", kwargs={"team_slug": request.team.slug}),
            button="Revoke link",
        )
    revoke_invitation(invitation)
    record(
        "invitation.revoke",
        team=request.team,
        actor=Actor.of(request),
        target_type="invitation",
        target_id=invitation.public_id,
    )
    messages.success(request, "Invitation link revoked.")
    if not is_fragment_request(request):
        return redirect("member-list", team_slug=request.team.slug)
    return render_page(request, TEMPLATE, _context(request), partial="invitations")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: TeamRequest) -> HttpResponse:
    # The token travels in the query/body, never the path: Django logs paths of 4xx responses.
    token = (request.POST.get("token") or request.GET.get("token") or "").strip()
    invitation = find_invitation(token)
    if invitation is None:
        return render(request, "console/members/accept.html", {"invitation": None})
    if request.method == "POST":
        try:
            accept_invitation(invitation, request.user)
        except MembershipError as error:
            messages.error(request, str(error))
            return redirect("home")
        record(
            "invitation.accept",
            team=invitation.team,
            actor=Actor.of(request),
            target_type="invitation",
            target_id=invitation.public_id,
            role=invitation.role,
        )
        messages.success(request, f"You joined {invitation.team.name}.")
        return redirect("team-detail", team_slug=invitation.team.slug)
    return render(
        request, "console/members/accept.html", {"invitation": invitation, "token": token}
    )


T = "t/<slug:team_slug>/"
urlpatterns = [
    path(T + "members/", member_list, name="member-list"),
    path(T + "members/<str:username>/role/", member_role, name="member-role"),
    path(T + "members/<str:username>/remove/", member_remove, name="member-remove"),
    path(T + "invitations/new/", invitation_create, name="invitation-create"),
    path(
        T + "invitations/<str:invitation_id>/revoke/", invitation_revoke, name="invitation-revoke"
    ),
    path("invite/", invitation_accept, name="invitation-accept"),
]
