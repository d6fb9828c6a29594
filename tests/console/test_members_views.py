from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from console.models import AuditEvent, Invitation, Membership
from tests.factories import make_user

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _link(response) -> str:
    found = re.search(
        r'value="(http://testserver/invite/\?token=(nsi_[^"]+))"', response.content.decode()
    )
    assert found, "no invitation link in the response"
    return found.group(1)


def _invite(client, role="member") -> str:
    return _link(client.post("/t/acme/invitations/new/", {"role": role, "expires_in_days": 7}))


def test_member_list(viewer_client, team):
    response = viewer_client.get("/t/acme/members/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "alice@example.com" in body and "bob@example.com" in body
    assert 'name="role"' not in body  # only owners get the role selects


def test_change_role_htmx_returns_row(owner_client, member, team):
    response = owner_client.post("/t/acme/members/bob@example.com/role/", {"role": "admin"}, **HX)
    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith("<tr>") and body.endswith("</tr>")
    assert Membership.objects.get(team=team, user=member).role == "admin"
    event = AuditEvent.objects.get(action="member.role_change")
    assert event.metadata == {"old_role": "member", "new_role": "admin"}


def test_change_role_plain_redirects(owner_client, member, team):
    response = owner_client.post("/t/acme/members/bob@example.com/role/", {"role": "viewer"})
    assert response["Location"] == "/t/acme/members/"
    assert Membership.objects.get(team=team, user=member).role == "viewer"


def test_last_owner_cannot_be_demoted_or_leave(owner_client, owner, team):
    response = owner_client.post("/t/acme/members/alice@example.com/role/", {"role": "admin"}, **HX)
    assert "A team needs an owner" in response.headers["HX-Trigger"]
    assert Membership.objects.get(team=team, user=owner).role == "owner"
    owner_client.post("/t/acme/members/alice@example.com/remove/")
    assert Membership.objects.filter(team=team, user=owner).exists()


def test_owner_can_leave_when_another_owner_exists(owner_client, owner, member, team):
    Membership.objects.filter(team=team, user=member).update(role="owner")
    response = owner_client.post("/t/acme/members/alice@example.com/remove/")
    assert response["Location"] == "/"
    assert not Membership.objects.filter(team=team, user=owner).exists()
    assert AuditEvent.objects.filter(action="member.leave", target_id="alice@example.com").exists()


def test_only_owners_manage_members(member_client, viewer_client, team):
    for client in (member_client, viewer_client):
        assert (
            client.post("/t/acme/members/alice@example.com/role/", {"role": "viewer"}).status_code
            == 403
        )
        assert client.post("/t/acme/members/alice@example.com/remove/").status_code == 403
        assert (
            client.post(
                "/t/acme/invitations/new/", {"role": "owner", "expires_in_days": 7}
            ).status_code
            == 403
        )
    Membership.objects.get(team=team, user__username="alice@example.com", role="owner")


def test_anyone_can_leave(viewer_client, viewer, team):
    assert viewer_client.get("/t/acme/members/carol@example.com/remove/").status_code == 200
    viewer_client.post("/t/acme/members/carol@example.com/remove/")
    assert not Membership.objects.filter(team=team, user=viewer).exists()


def test_owner_removes_member(owner_client, member, team):
    response = owner_client.post("/t/acme/members/bob@example.com/remove/", **HX)
    assert response["HX-Redirect"] == "/t/acme/members/"
    assert not Membership.objects.filter(team=team, user=member).exists()
    assert AuditEvent.objects.filter(action="member.remove", target_id="bob@example.com").exists()


def test_other_team_members_are_404(owner_client, outsider, other_team, team):
    assert owner_client.get("/t/other/members/").status_code == 404
    assert (
        owner_client.post(
            "/t/acme/members/charlie@example.com/role/", {"role": "viewer"}
        ).status_code
        == 404
    )
    assert owner_client.post("/t/other/members/charlie@example.com/remove/").status_code == 404


def test_invitation_link_shown_once_stored_hashed(owner_client, owner, team):
    response = owner_client.post(
        "/t/acme/invitations/new/", {"role": "viewer", "expires_in_days": 1}, **HX
    )
    assert response.content.decode().lstrip().startswith('<section id="invitations"')
    link = _link(response)
    token = link.split("token=")[1]
    invitation = Invitation.objects.get(team=team)
    assert invitation.role == "viewer"
    assert invitation.created_by == owner  # the console face's Actor
    assert token not in str(Invitation.objects.filter(pk=invitation.pk).values().get())
    assert token not in str(list(AuditEvent.objects.values()))
    assert token not in owner_client.get("/t/acme/members/").content.decode()
    assert timedelta(hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=1)


def test_accept_invitation(owner_client, outsider_client, outsider, team):
    link = _invite(owner_client, role="viewer")
    page = outsider_client.get(link)
    assert page.status_code == 200 and b"Join Acme" in page.content
    token = link.split("token=")[1]
    response = outsider_client.post("/invite/", {"token": token})
    assert response["Location"] == "/t/acme/"
    assert Membership.objects.get(team=team, user=outsider).role == "viewer"
    assert AuditEvent.objects.filter(action="invitation.accept", team=team).exists()
    # Used once.
    again = make_user("dave@example.com")
    other = Client()
    other.force_login(again)
    assert b"not valid" in other.get(link).content


def test_accept_needs_sign_in(client, owner_client, team):
    link = _invite(owner_client)
    response = client.get(link)
    assert response.status_code == 302 and response["Location"].startswith("/signin/?next=")


def test_revoked_and_expired_invitations_refused(owner_client, outsider_client, outsider, team):
    link = _invite(owner_client)
    invitation = Invitation.objects.get(team=team)
    assert (
        owner_client.get(f"/t/acme/invitations/{invitation.public_id}/revoke/").status_code == 200
    )
    response = owner_client.post(f"/t/acme/invitations/{invitation.public_id}/revoke/", **HX)
    assert response.content.decode().lstrip().startswith('<section id="invitations"')
    assert b"not valid" in outsider_client.get(link).content
    outsider_client.post("/invite/", {"token": link.split("token=")[1]})
    assert not Membership.objects.filter(team=team, user=outsider).exists()

    link = _invite(owner_client)
    Invitation.objects.filter(revoked_at__isnull=True).update(expires_at=timezone.now())
    assert b"not valid" in outsider_client.get(link).content


def test_other_teams_invitation_revoke_is_404(owner_client, outsider_client, other_team, team):
    foreign = Invitation.objects.create(
        team=other_team,
        token_prefix="nsi_x",
        token_digest="x",
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert owner_client.post(f"/t/acme/invitations/{foreign.public_id}/revoke/").status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_csrf_enforced(csrf_client, team):
    assert (
        csrf_client.post(
            "/t/acme/invitations/new/", {"role": "member", "expires_in_days": 7}
        ).status_code
        == 403
    )
    assert not Invitation.objects.exists()
